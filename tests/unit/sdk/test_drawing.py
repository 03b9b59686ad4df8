"""DetectResult.draw: boxes and labels on a copy of the image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cv_client.models import DetectResult
from tests.unit.sdk import bodies


def test_draw_outlines_each_box_on_a_copy_and_leaves_the_inside_alone() -> None:
    result = DetectResult.model_validate(bodies.detect())  # one box: (10, 10) - (40, 30)
    original = Image.new("RGB", (64, 48), (0, 0, 0))
    drawn = np.asarray(result.draw(original, width=2))
    assert np.asarray(original).max() == 0  # the caller's image is untouched
    assert drawn[20, 10].any() and drawn[20, 40].any() and drawn[30, 25].any()  # left, right and bottom edges
    assert not drawn[20, 25].any()  # inside the box
    assert not drawn[45, 60].any()  # far from it
    assert drawn[0:10, 10:40].any()  # the label sits above the box


def test_draw_takes_bytes_and_arrays_and_returns_rgb() -> None:
    result = DetectResult.model_validate(bodies.detect())
    buffer = io.BytesIO()
    Image.new("L", (64, 48), 0).save(buffer, format="PNG")
    from_bytes = result.draw(buffer.getvalue())
    from_array = result.draw(np.zeros((48, 64, 3), dtype=np.uint8))
    assert from_bytes.mode == "RGB" and from_bytes.size == (64, 48)
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_array))


def test_a_box_at_the_top_edge_keeps_its_label_inside_the_image() -> None:
    body = bodies.detect()
    body["detections"][0]["box"] = {"x1": 5.0, "y1": 0.0, "x2": 50.0, "y2": 40.0}
    drawn = np.asarray(DetectResult.model_validate(body).draw(Image.new("RGB", (64, 48))))
    assert drawn[2:10, 8:30].any()
