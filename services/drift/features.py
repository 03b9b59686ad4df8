"""PLACEHOLDER (h-driftserve): h-driftcore owns this module; the integrator replaces it with the real one.

Only the interface of DRIFT_INTERFACE.md, with a simple implementation, so the serving side can be built and tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.models.contract import Prediction

IMAGE_FEATURES: tuple[str, ...] = ("width", "height", "brightness", "contrast", "saturation", "blur")
SKETCH_DIM = 32


def image_statistics(pixels: np.ndarray) -> dict[str, float]:
    """Image statistics of an RGB uint8 H x W x 3 image, on a strided thumbnail (width/height of the full image)."""
    height, width = pixels.shape[:2]
    step = max(1, max(height, width) // 64)
    thumb = pixels[::step, ::step].astype(np.float32)
    red, green, blue = thumb[..., 0], thumb[..., 1], thumb[..., 2]  # numpy reduces a 3-long last axis slowly
    gray = (red + green + blue) / 3
    saturation = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    blur = float(np.abs(np.diff(gray, axis=0)).mean()) if gray.shape[0] > 1 else 0.0
    return {
        "width": float(width),
        "height": float(height),
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "saturation": float(saturation.mean()),
        "blur": blur,
    }


def request_features(pixels: np.ndarray, prediction: Prediction) -> dict[str, Any]:
    """The JSON-ready features of one answered item, as the inference log stores them."""
    label: str | None = None
    confidence: float | None = None
    result = prediction.result
    if result.get("predictions"):
        top = result["predictions"][0]
        label, confidence = str(top.get("label")), float(top.get("score", 0.0))
    elif result.get("detections"):
        best = max(result["detections"], key=lambda d: d.get("score", 0.0))
        label, confidence = str(best.get("label")), float(best.get("score", 0.0))
    return {
        "image": image_statistics(pixels),
        "label": label,
        "confidence": confidence,
        "sketch": getattr(prediction, "sketch", None),
    }
