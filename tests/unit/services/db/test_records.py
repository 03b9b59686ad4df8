"""What an inference-log row says about a result and its image."""

from __future__ import annotations

import numpy as np

from services.db.records import image_columns, summarize
from services.imaging import DecodedImage


def test_summaries() -> None:
    assert summarize({"predictions": [{"label": "tabby", "score": 0.9}]}) == {"top_label": "tabby", "top_score": 0.9}
    assert summarize({"predictions": []}) == {}
    boxes = [{"label": "cat", "score": 0.4}, {"label": "person", "score": 0.8}]
    assert summarize({"detections": boxes}) == {"box_count": 2, "top_label": "person", "top_score": 0.8}
    assert summarize({"results": [{"id": "x" * 300, "score": 0.5}]}) == {"top_label": "x" * 256, "top_score": 0.5}
    assert summarize({"results": []}) == {} and summarize({"embedding": [0.1]}) == {}
    assert summarize({"predictions": [{"class_id": 3}]}) == {"top_label": None, "top_score": None}


def test_image_columns() -> None:
    image = DecodedImage(pixels=np.zeros((3, 4, 3), np.uint8), format="PNG", sha256="f" * 64, byte_size=99)
    assert image_columns(image) == {
        "image_sha256": "f" * 64,
        "image_bytes": 99,
        "image_width": 4,
        "image_height": 3,
        "image_format": "PNG",
    }
    assert set(image_columns(None).values()) == {None}
