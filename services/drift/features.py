"""What the drift check measures of one request: image statistics, the answer's label and confidence, the sketch.

The inference log stores :func:`request_features` per item (its ``features`` column) and the reference
profile of a model version holds the same dictionaries for its validation images (services/drift/reference.py),
so the two sides are computed by one function.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from services.models.contract import Prediction
from services.models.sketch import SKETCH_DIM

__all__ = ["IMAGE_FEATURES", "SKETCH_DIM", "image_statistics", "request_features"]

IMAGE_FEATURES: tuple[str, ...] = ("width", "height", "brightness", "contrast", "saturation", "blur")
THUMBNAIL_SIDE = 64  # the statistics are read on a strided thumbnail whose longer side is at most this
DECIMALS = 5
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L" mode


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    """Every k-th pixel in both directions (no resampling: a copy-free view), as float32 in 0..1."""
    step = max(1, math.ceil(max(pixels.shape[0], pixels.shape[1]) / THUMBNAIL_SIDE))
    return np.asarray(pixels[::step, ::step], dtype=np.float32) / 255.0


def image_statistics(pixels: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, float]:
    """The image features of one decoded upload.

    Args:
        pixels: RGB uint8 H x W x 3, the decoded upload (at full size, or reduced: services/imaging.py, DecodeFloor).
        size: The upload's (width, height) when the pixels are reduced; None: the pixels' own.

    Returns:
        ``width``, ``height`` (pixels, of the full image); ``brightness`` (mean luma, 0..1); ``contrast`` (standard
        deviation of luma); ``saturation`` (mean HSV saturation, 0..1); ``blur`` (sharpness: the mean absolute
        4-neighbour Laplacian of luma, 0..4; lower is blurrier). All but the size are read on a strided thumbnail
        whose longer side is at most ``THUMBNAIL_SIDE`` pixels, so the cost does not grow with the upload.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError("pixels must be H x W x 3")
    small = _thumbnail(pixels)
    luma = small @ LUMA
    # Channel by channel: numpy's max/min over a last axis of 3 cost ~80 us each on a 64-pixel thumbnail, on the
    # event loop of every answered request; two elementwise maxima ~5 us, the same values (a maximum is exact).
    red, green, blue = small[..., 0], small[..., 1], small[..., 2]
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    saturation = (high - low) / np.maximum(high, 1e-6)  # 0 where the pixel is black (high == low == 0)
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        centre = luma[1:-1, 1:-1]
        laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * centre
        blur = float(np.abs(laplacian).mean())
    else:
        blur = 0.0
    values = {
        "width": float(size[0] if size else pixels.shape[1]),
        "height": float(size[1] if size else pixels.shape[0]),
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "saturation": float(saturation.mean()),
        "blur": blur,
    }
    return {name: round(value, DECIMALS) for name, value in values.items()}


def _top(prediction: Prediction) -> tuple[str | None, float | None]:
    """The answer's top-1 label and score: the best class, the best box, or nothing (an embedding)."""
    result = prediction.result
    ranked = result.get("predictions") or result.get("detections")
    if not ranked:
        return None, None
    best = max(ranked, key=lambda item: float(item.get("score", 0.0)))
    label = best.get("label")
    return (str(label) if label is not None else None), round(float(best.get("score", 0.0)), DECIMALS)


def request_features(pixels: np.ndarray, prediction: Prediction, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The JSON-ready drift features of one answered request (the inference log's ``features`` column).

    Args:
        pixels: The decoded upload, RGB uint8 H x W x 3.
        prediction: The model's answer for it.
        size: The upload's (width, height) when the pixels were decoded reduced; None: the pixels' own.

    Returns:
        ``{"image": {<IMAGE_FEATURES>: float}, "label": str | None, "confidence": float | None,
        "sketch": list[float] | None}``; a detection without boxes has label and confidence None.
    """
    label, confidence = _top(prediction)
    return {
        "image": image_statistics(pixels, size),
        "label": label,
        "confidence": confidence,
        "sketch": list(prediction.sketch) if prediction.sketch is not None else None,
    }
