"""The inference log's ledger and recording client: records per image, the request-level record, the wrapper."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from kernel.errors import InvalidImage, ModelUnavailable, NotFound, error_to_dict
from services.db import records as records_module
from services.drift.features import IMAGE_FEATURES, SKETCH_DIM
from services.http.context import RequestContext
from services.http.recording import (
    RECORDED_ROUTES,
    ItemLedger,
    RecordingClient,
    bind_ledger,
    current_ledger,
    reset_ledger,
)
from services.imaging import DecodedImage
from services.index.search import SearchItem, SearchOutcome
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from tests.unit.services.http.test_caching import FakeModels


def image() -> DecodedImage:
    return DecodedImage(pixels=np.zeros((3, 4, 3), np.uint8), format="PNG", sha256="f" * 64, byte_size=99)


def prediction(result: dict[str, object]) -> Prediction:
    return Prediction(model="detector", version="v2", precision="int8", result=result, timings_ms={})


@pytest.fixture
def ledger() -> Iterator[ItemLedger]:
    opened = ItemLedger()
    token = bind_ledger(opened)
    try:
        yield opened
    finally:
        reset_ledger(token)


def test_the_recorded_routes_are_the_catalogue_routes_and_batch() -> None:
    assert RECORDED_ROUTES == {
        "/api/v1/classify": "classifier",
        "/api/v1/detect": "detector",
        "/api/v1/search": "embedder",
        "/api/v1/batch": None,
    }


def test_a_request_that_read_no_image_gives_one_record() -> None:
    (record,) = ItemLedger().records(
        RequestContext(request_id="r"),
        route="/api/v1/classify",
        status=422,
        error_type="invalid-parameter",
        latency_ms=1.23456,
    )
    assert (record.model, record.status, record.error_type, record.latency_ms) == (
        "classifier",
        422,
        "invalid-parameter",
        1.235,
    )
    assert record.image_sha256 is None and record.item_index == 0 and record.request_id == "r"


def test_each_image_has_its_own_outcome() -> None:
    ledger = ItemLedger(model="detector")
    ok, failed = image(), image()
    ledger.image_read(ok)
    ledger.image_refused(InvalidImage("torn"))
    ledger.image_read(failed)
    ledger.answered(ok.pixels, prediction({"detections": []}), {"box_count": 0}, cached=True)
    ledger.failed(failed.pixels, ModelUnavailable("down"))
    context = RequestContext(request_id="r", client_id="c", tier="free")
    records = ledger.records(context, route="/api/v1/batch", status=200, error_type=None, latency_ms=5)
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


def test_an_image_without_its_own_status_takes_the_response_s() -> None:
    ledger = ItemLedger()
    ledger.image_read(image())  # read, then the model call raised: the response says what happened
    (record,) = ledger.records(
        RequestContext(request_id="r"), route="/api/v1/detect", status=503, error_type="model-unavailable", latency_ms=1
    )
    assert (record.status, record.error_type, record.model, record.image_format) == (
        503,
        "model-unavailable",
        "detector",
        "PNG",
    )


def test_an_answer_for_an_image_not_read_through_the_ledger_is_still_kept() -> None:
    ledger = ItemLedger()
    ledger.answered(image().pixels, prediction({}), {}, cached=False)
    context = RequestContext(request_id=None)
    assert len(ledger.records(context, route="/api/v1/search", status=200, error_type=None, latency_ms=1)) == 1


def test_outside_a_request_the_ledger_is_detached() -> None:
    assert current_ledger() is not current_ledger()


def test_the_recording_client_notes_each_answer_and_failure(ledger: ItemLedger) -> None:
    good, bad = image(), image()
    ledger.image_read(good)
    ledger.image_read(bad)
    items = [
        InferenceItem(image=good.pixels, params={"top_k": 1}),
        InferenceItem(image=bad.pixels, params={"top_k": -1}),  # FakeModels fails this one
    ]
    outcomes = asyncio.run(RecordingClient(FakeModels()).infer("classifier", items))  # type: ignore[arg-type]
    assert outcomes[0].prediction is not None and outcomes[1].error is not None
    answered, failed = ledger.items
    assert answered.status == 200 and answered.summary == {"top_label": "v1-answer", "top_score": 0.5}
    assert answered.prediction is not None and answered.prediction.version == "v1" and answered.image is good
    assert (failed.status, failed.error_type, failed.image) == (503, "model-unavailable", bad)


def test_the_recording_client_keeps_the_cached_flag(ledger: ItemLedger) -> None:
    class Cached:
        async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
            return [Outcome(prediction=prediction({"detections": []}), cached=True) for _ in items]

    asyncio.run(RecordingClient(Cached()).infer("detector", [InferenceItem(image=image().pixels)]))  # type: ignore[arg-type]
    (item,) = ledger.items
    assert item.cached is True and item.summary == {"box_count": 0}


def test_the_recording_client_notes_search_hits_and_errors(ledger: ItemLedger) -> None:
    class Engine:
        async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
            hit = {"id": "a", "score": 0.9, "metadata": {}}
            return [
                SearchOutcome(prediction=prediction({}), hits=[hit], gallery_size=1),
                SearchOutcome(error=error_to_dict(NotFound("gone"))),
            ]

    found, missing = image(), image()
    items = [SearchItem(image=found.pixels), SearchItem(image=missing.pixels)]
    asyncio.run(RecordingClient(Engine()).search(items))  # type: ignore[arg-type]
    hit, error = ledger.items
    assert (hit.status, hit.cached, hit.summary) == (200, False, {"top_label": "a", "top_score": 0.9})
    assert (error.status, error.error_type) == (404, "not-found")


def test_the_recording_client_notes_nothing_when_the_call_raises(ledger: ItemLedger) -> None:
    models = FakeModels()
    models.fail = ModelUnavailable("down")
    with pytest.raises(ModelUnavailable):
        asyncio.run(RecordingClient(models).infer("classifier", [InferenceItem(image=image().pixels)]))  # type: ignore[arg-type]
    assert ledger.items == []  # the image read keeps the response's 503


def test_other_calls_pass_through() -> None:
    client: Any = RecordingClient(FakeModels())  # type: ignore[arg-type]
    assert asyncio.run(client.gallery_size()) == 3 and asyncio.run(client.gallery_remove("x")) is True
    assert asyncio.run(client.status("classifier"))["default_version"] == "v1"


def test_an_answered_image_keeps_the_drift_features_and_others_none() -> None:
    ledger = ItemLedger(model="classifier")
    ok, failed = image(), image()
    ledger.image_read(ok)
    ledger.image_refused(InvalidImage("torn"))
    ledger.image_read(failed)
    sketch = [0.5] * SKETCH_DIM
    answer = Prediction(
        model="classifier",
        version="v2",
        precision="fp32",
        result={"predictions": [{"class_id": 3, "label": "tabby", "score": 0.75}]},
        timings_ms={},
        sketch=sketch,
    )
    ledger.answered(ok.pixels, answer, {}, cached=True)  # a cached answer is traffic too
    ledger.failed(failed.pixels, ModelUnavailable("down"))
    context = RequestContext(request_id="r")
    records = ledger.records(context, route="/api/v1/batch", status=200, error_type=None, latency_ms=1)
    features = records[0].features
    assert features is not None and set(features) == {"image", "label", "confidence", "sketch"}
    assert set(features["image"]) == set(IMAGE_FEATURES)
    assert (features["image"]["width"], features["image"]["height"]) == (4, 3)
    assert (features["label"], features["confidence"], features["sketch"]) == ("tabby", 0.75, sketch)
    assert records[1].features is None and records[2].features is None
    assert records[0].model_dump()["features"] == features  # JSON-ready: what the writer inserts


def test_features_that_fail_cost_only_the_features(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(pixels: np.ndarray, prediction: Prediction) -> dict[str, Any]:
        raise ValueError("bug")

    monkeypatch.setattr(records_module, "request_features", broken)
    ledger = ItemLedger()
    ledger.answered(image().pixels, prediction({"detections": []}), {"box_count": 0}, cached=False)
    with caplog.at_level(logging.WARNING):
        (record,) = ledger.records(
            RequestContext(request_id="r"), route="/api/v1/detect", status=200, error_type=None, latency_ms=1
        )
    assert record.status == 200 and record.box_count == 0 and record.features is None
    assert "drift features failed" in caplog.text
