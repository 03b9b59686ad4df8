"""What an inference-log row says about a result and its image, shared by the api and the job workers."""

from __future__ import annotations

from typing import Any

from services.imaging import DecodedImage


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
