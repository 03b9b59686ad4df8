"""AsyncRemoteClient around fake bentoml.depends handles: results, errors and transport failures."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import numpy as np
import pytest

from kernel.errors import ModelUnavailable, NotFound, error_to_dict
from services.clients.remote import AsyncRemoteClient
from services.index.search import SearchItem
from services.models.worker import InferenceItem


class FakeAsync:
    """``to_async`` of a handle: each method answers its value, raises it, or (a list of exceptions then a value)
    raises each in turn, one a call, before answering."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any) -> Any:
            self.calls.append((name, args))
            answer = self.answers[name]
            if isinstance(answer, Failures):
                answer = answer.next()
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


class Failures:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def next(self) -> Any:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FakeClient:
    def __init__(self, **answers: Any) -> None:
        self.to_async = FakeAsync(answers)


def _item() -> InferenceItem:
    return InferenceItem(image=np.zeros((4, 4, 3), np.uint8))


PREDICTION = {"model": "classifier", "version": "v1", "precision": "fp32", "result": {}, "timings_ms": {}}


def test_infer_validates_outcomes_from_dicts() -> None:
    backend = AsyncRemoteClient({"classifier": FakeClient(infer=[{"prediction": PREDICTION}])})
    (outcome,) = asyncio.run(backend.infer("classifier", [_item()]))
    assert outcome.prediction is not None and outcome.prediction.version == "v1"


def test_transport_failure_becomes_model_unavailable() -> None:
    backend = AsyncRemoteClient({"detector": FakeClient(infer=ConnectionError("refused"))})
    with pytest.raises(ModelUnavailable):
        asyncio.run(backend.infer("detector", [_item()]))


def test_service_errors_pass_through_unchanged() -> None:
    backend = AsyncRemoteClient({"classifier": FakeClient(status=NotFound("gone"))})
    with pytest.raises(NotFound):
        asyncio.run(backend.status("classifier"))


def test_gallery_calls_reach_the_embedder() -> None:
    embedder = FakeClient(
        search=[{"prediction": PREDICTION, "hits": [{"id": "a", "score": 1.0, "metadata": {}}], "gallery_size": 1}],
        gallery_add={"id": "a", "model": "embedder", "version": "v1"},
        gallery_remove=True,
        gallery_size=7,
        status={"model": "embedder", "status": "ok"},
    )
    backend = AsyncRemoteClient({"embedder": embedder})
    (hit,) = asyncio.run(backend.search([SearchItem(image=np.zeros((4, 4, 3), np.uint8))]))
    assert hit.hits[0]["id"] == "a"
    assert asyncio.run(backend.gallery_add(_item(), {"k": 1}))["id"] == "a"
    assert asyncio.run(backend.gallery_remove("a")) is True
    assert asyncio.run(backend.gallery_size()) == 7
    assert asyncio.run(backend.status("embedder"))["status"] == "ok"
    assert [name for name, _ in embedder.to_async.calls] == [
        "search",
        "gallery_add",
        "gallery_remove",
        "gallery_size",
        "status",
    ]


def test_gallery_add_error_is_raised() -> None:
    error = error_to_dict(NotFound("no such thing"))
    backend = AsyncRemoteClient({"embedder": FakeClient(gallery_add={"error": error})})
    with pytest.raises(NotFound, match="no such thing"):
        asyncio.run(backend.gallery_add(_item(), {}))


@pytest.mark.parametrize(
    "stale", [aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(32, "Can not write request body")]
)
def test_a_call_sent_on_a_connection_the_service_had_closed_goes_once_more(stale: Exception) -> None:
    classifier = FakeClient(infer=Failures(stale, [{"prediction": PREDICTION}]))
    backend = AsyncRemoteClient({"classifier": classifier})
    (outcome,) = asyncio.run(backend.infer("classifier", [_item()]))
    assert outcome.prediction is not None
    assert [name for name, _ in classifier.to_async.calls] == ["infer", "infer"]


def test_a_second_stale_connection_is_a_model_unavailable() -> None:
    classifier = FakeClient(infer=aiohttp.ServerDisconnectedError())
    with pytest.raises(ModelUnavailable):
        asyncio.run(AsyncRemoteClient({"classifier": classifier}).infer("classifier", [_item()]))
    assert len(classifier.to_async.calls) == 2


def test_a_gallery_add_is_not_sent_twice() -> None:
    # The service may have read it and added the image before the connection went: a second call could add it again.
    embedder = FakeClient(gallery_add=Failures(aiohttp.ServerDisconnectedError(), {"id": "a"}))
    with pytest.raises(ModelUnavailable):
        asyncio.run(AsyncRemoteClient({"embedder": embedder}).gallery_add(_item(), {}))
    assert len(embedder.to_async.calls) == 1


class Unentered:
    """A handle as BentoML hands it to the api's start-up hooks: ``to_async`` has no methods until it is entered."""

    def __init__(self, **answers: Any) -> None:
        self._ready = FakeAsync(answers)
        self.to_async: Any = object()
        self.entered = 0

    async def __aenter__(self) -> Unentered:
        self.entered += 1
        self.to_async = self._ready
        return self


def test_a_handle_is_entered_before_its_first_call_and_only_then() -> None:
    handle = Unentered(status={"model": "classifier"})
    backend = AsyncRemoteClient({"classifier": handle})

    async def twice() -> list[dict[str, Any]]:
        return [await backend.status("classifier"), await backend.status("classifier")]

    assert asyncio.run(twice()) == [{"model": "classifier"}] * 2
    assert handle.entered == 1


def test_bentoml_s_own_handle_has_its_methods_once_entered() -> None:
    # The real proxy `bentoml.depends` makes, not a fake: before entering, its methods are missing (what the shadow
    # mirror's first status read met at start-up); entering needs no server (the service class gives the routes).
    from _bentoml_impl.client import RemoteProxy
    from bentoml._internal.configuration.containers import BentoMLContainer

    from services.clients.remote import service_class

    service = service_class("classifier")
    saved = copy.deepcopy(BentoMLContainer.config.get())
    try:
        service.inject_config()  # what serving does first: the proxy reads the service's timeout from it
        proxy = RemoteProxy("http://127.0.0.1:9", service=service)
    finally:
        BentoMLContainer.config.set(saved)
    assert not hasattr(proxy.to_async, "status")
    backend = AsyncRemoteClient({"classifier": proxy})
    assert callable(asyncio.run(backend._ready(proxy)).status)
