"""RequestTrace: records per image, the request-level record, and result summaries."""

from __future__ import annotations

import numpy as np

from kernel.errors import InvalidImage, ModelUnavailable
from services.http.recording import RequestTrace, current_trace, summarize
from services.imaging import DecodedImage
from services.models.contract import Prediction


def image() -> DecodedImage:
    return DecodedImage(pixels=np.zeros((3, 4, 3), np.uint8), format="PNG", sha256="f" * 64, byte_size=99)


def prediction(result: dict[str, object]) -> Prediction:
    return Prediction(model="detector", version="v2", precision="int8", result=result, timings_ms={})


def test_a_request_that_read_no_image_gives_one_record() -> None:
    (record,) = RequestTrace(request_id="r").records(
        route="/api/v1/classify", status=422, error_type="invalid-parameter", latency_ms=1.23456
    )
    assert (record.model, record.status, record.error_type, record.latency_ms) == (
        "classifier",
        422,
        "invalid-parameter",
        1.235,
    )
    assert record.image_sha256 is None and record.item_index == 0


def test_each_image_has_its_own_outcome() -> None:
    trace = RequestTrace(request_id="r", client_id="c", tier="free", model="detector")
    ok, failed = image(), image()
    trace.image_read(ok)
    trace.image_refused(InvalidImage("torn"))
    trace.image_read(failed)
    trace.answered(ok, prediction({"detections": []}), {"detections": []}, cached=True)
    trace.failed(failed, ModelUnavailable("down"))
    records = trace.records(route="/api/v1/batch", status=200, error_type=None, latency_ms=5)
    assert [(r.item_index, r.status, r.error_type) for r in records] == [
        (0, 200, None),
        (1, 400, "invalid-image"),
        (2, 503, "model-unavailable"),
    ]
    first = records[0]
    assert (first.model, first.version, first.precision, first.cached, first.box_count) == (
        "detector",
        "v2",
        "int8",
        True,
        0,
    )
    assert (first.client_id, first.tier, first.image_width, first.image_height, first.image_bytes) == (
        "c",
        "free",
        4,
        3,
        99,
    )
    assert records[2].model == "detector" and records[2].version is None


def test_an_answer_for_an_image_not_read_through_the_trace_is_still_kept() -> None:
    trace = RequestTrace(request_id=None)
    trace.answered(image(), prediction({}), {}, cached=False)
    assert len(trace.records(route="/api/v1/search", status=200, error_type=None, latency_ms=1)) == 1


def test_summaries() -> None:
    assert summarize({"predictions": [{"label": "tabby", "score": 0.9}]}) == {"top_label": "tabby", "top_score": 0.9}
    assert summarize({"predictions": []}) == {}
    boxes = [{"label": "cat", "score": 0.4}, {"label": "person", "score": 0.8}]
    assert summarize({"detections": boxes}) == {"box_count": 2, "top_label": "person", "top_score": 0.8}
    assert summarize({"results": [{"id": "x" * 300, "score": 0.5}]}) == {"top_label": "x" * 256, "top_score": 0.5}
    assert summarize({"results": []}) == {} and summarize({"embedding": [0.1]}) == {}
    assert summarize({"predictions": [{"class_id": 3}]}) == {"top_label": None, "top_score": None}


def test_outside_a_request_the_trace_is_detached() -> None:
    assert current_trace() is not current_trace()
