"""What an inference-log row says about a result and its image, shared by the api and the job workers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from services.drift.features import request_features
from services.imaging import DecodedImage
from services.models.contract import Prediction

log = logging.getLogger(__name__)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Top label and score (classify), best box and box count (detect), best hit (search)."""
    if "detections" in result:
        boxes = result["detections"]
        best = max(boxes, key=lambda d: d.get("score", 0.0)) if boxes else None
        return {"box_count": len(boxes), **_top(best, "label")}
    for key, name in (("predictions", "label"), ("results", "id")):
        if key in result:
            return _top(result[key][0] if result[key] else None, name)
    return {}


def _top(entry: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if entry is None:
        return {}
    label = entry.get(name)
    return {"top_label": None if label is None else str(label)[:256], "top_score": entry.get("score")}


def image_columns(image: DecodedImage | None) -> dict[str, Any]:
    """The image columns of a row (all None when no image was read)."""
    return {
        "image_sha256": image.sha256 if image else None,
        "image_bytes": image.byte_size if image else None,
        "image_width": image.width if image else None,
        "image_height": image.height if image else None,
        "image_format": image.format if image else None,
    }


def drift_features(
    pixels: np.ndarray, prediction: Prediction, size: tuple[int, int] | None = None
) -> dict[str, Any] | None:
    """The ``features`` column of an answered item (services/drift/features.py); None, logged, should they fail.

    A failure here must not cost the row: the request was answered, only the drift monitor loses one sample.
    """
    try:
        return request_features(pixels, prediction, size)
    except Exception:
        log.warning("drift features failed", extra={"model": prediction.model}, exc_info=True)
        return None
