"""The ledger's copy of an answered request for the shadow mirror: which images, at which positions."""

from __future__ import annotations

import asyncio

import numpy as np

from kernel.errors import InvalidImage, ModelUnavailable
from services.http.context import RequestContext
from services.http.recording import ItemLedger, RecordingClient, bind_ledger, reset_ledger
from services.imaging import DecodedImage
from services.index.search import SearchItem, SearchOutcome
from services.models.contract import Prediction
from services.models.worker import InferenceItem
from tests.unit.services.http.test_caching import FakeModels


def image(value: int) -> DecodedImage:
    return DecodedImage(pixels=np.full((3, 4, 3), value, np.uint8), format="PNG", sha256=f"{value:064x}", byte_size=9)


def prediction() -> Prediction:
    return Prediction(model="detector", version="v2", precision="int8", result={"detections": []}, timings_ms={})


def call(read: DecodedImage, version: str | None = None) -> InferenceItem:
    return InferenceItem(image=read.pixels, params={"confidence": 0.3}, version=version)


def test_the_copy_holds_the_answered_images_at_their_request_positions() -> None:
    ledger = ItemLedger(model="detector")
    cached, failed, fresh = image(2), image(3), image(4)
    ledger.image_refused(InvalidImage("torn"))
    for read in (cached, failed, fresh):
        ledger.image_read(read)
    ledger.answered(cached.pixels, prediction(), {}, cached=True, call=call(cached))  # a hit is mirrored too
    ledger.failed(failed.pixels, ModelUnavailable("down"))
    ledger.answered(fresh.pixels, prediction(), {}, cached=False, call=call(fresh))
    context = RequestContext(request_id="r", client_id="c", tier="free")
    shadow = ledger.shadow_copy(context, route="/api/v1/batch")
    assert shadow is not None
    assert (shadow.model, shadow.route, shadow.request_id, shadow.client_id, shadow.tier) == (
        "detector",
        "/api/v1/batch",
        "r",
        "c",
        "free",
    )
    assert [(i.index, i.image.sha256, i.params) for i in shadow.items] == [
        (1, cached.sha256, {"confidence": 0.3}),
        (3, fresh.sha256, {"confidence": 0.3}),
    ]


def test_nothing_is_copied_from_a_pinned_or_unanswered_request() -> None:
    ledger = ItemLedger()
    read = image(5)
    ledger.image_read(read)
    context = RequestContext(request_id="r")
    assert ledger.shadow_copy(context, route="/api/v1/detect") is None  # no answer
    ledger.answered(read.pixels, prediction(), {}, cached=False, call=call(read, version="v2"))
    assert ledger.shadow_copy(context, route="/api/v1/detect") is None  # pinned by the caller


def test_the_recording_client_notes_what_the_model_was_asked() -> None:
    ledger = ItemLedger()
    token = bind_ledger(ledger)
    try:
        read = image(6)
        ledger.image_read(read)
        item = InferenceItem(image=read.pixels, params={"top_k": 3})
        asyncio.run(RecordingClient(FakeModels()).infer("classifier", [item]))
    finally:
        reset_ledger(token)
    assert ledger.items[0].call is item


def test_a_search_is_copied_with_its_embedding_answer() -> None:
    class Searching(FakeModels):
        async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
            answer = Prediction(
                model="embedder", version="v2", precision="fp32", result={"embedding": [1.0]}, timings_ms={}
            )
            return [SearchOutcome(prediction=answer, hits=[{"id": "a", "score": 1.0}]) for _ in items]

    ledger = ItemLedger()
    token = bind_ledger(ledger)
    try:
        read = image(7)
        ledger.image_read(read)
        asyncio.run(RecordingClient(Searching()).search([SearchItem(image=read.pixels, top_k=2)]))
    finally:
        reset_ledger(token)
    shadow = ledger.shadow_copy(RequestContext(request_id="r"), route="/api/v1/search")
    assert shadow is not None and shadow.model == "embedder"
    assert shadow.items[0].production.result == {"embedding": [1.0]}
