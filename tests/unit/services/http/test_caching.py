"""CachingClient over a fake model client: hits, misses, keys, and the version rule."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from kernel.errors import ModelUnavailable, error_to_dict
from services.cache import MemoryCache
from services.http.caching import CachingClient, cache_key, version_digest
from services.index.search import SearchItem, SearchOutcome
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from tests.unit.fakes import sample

SHA = "ab" * 32


class FakeModels:
    """A model service: a default version, loaded versions with metadata, answers tagged with a version."""

    def __init__(self) -> None:
        self.default = "v1"
        self.metadata = {"v1": {"sha256": {"fp32": "aaa"}, "stage": "production"}, "v2": {"sha256": {"fp32": "bbb"}}}
        self.answering: str | None = None  # another version answers (a fallback)
        self.fail: Exception | None = None
        self.status_fails = False
        self.infer_calls: list[list[InferenceItem]] = []
        self.status_calls = 0

    async def status(self, model: str) -> dict[str, Any]:
        self.status_calls += 1
        if self.status_fails:
            raise ModelUnavailable("down")
        versions = [
            {"version": v, "stage": "production", "state": "ok", "precisions": {}, "errors": {}, "metadata": m}
            for v, m in self.metadata.items()
        ]
        return {"model": model, "status": "ok", "default_version": self.default, "versions": versions}

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        if self.fail:
            raise self.fail
        self.infer_calls.append(items)
        outcomes = []
        for item in items:
            if item.params.get("top_k") == -1:
                outcomes.append(Outcome(error=error_to_dict(ModelUnavailable("bad"))))
                continue
            version = item.version or self.answering or self.default
            result = {"predictions": [{"class_id": 0, "label": f"{version}-answer", "score": 0.5}]}
            prediction = Prediction(
                model=model, version=version, precision="fp32", result=result, timings_ms={"predict": 7.0}
            )
            outcomes.append(Outcome(prediction=prediction))
        return outcomes

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return [SearchOutcome(gallery_size=1) for _ in items]

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return {"id": "x"}

    async def gallery_remove(self, item_id: str) -> bool:
        return True

    async def gallery_size(self) -> int:
        return 3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def item(sha: str | None = SHA, version: str | None = None, top_k: int = 5) -> InferenceItem:
    return InferenceItem(
        image=np.zeros((2, 2, 3), np.uint8), params={"top_k": top_k}, version=version, image_sha256=sha
    )


def make(version_ttl_s: float = 1.0) -> tuple[CachingClient, FakeModels, Clock]:
    models, clock = FakeModels(), Clock()
    backend = CachingClient(models, MemoryCache(), ttl_s=60, prefix="t:", version_ttl_s=version_ttl_s, clock=clock)
    return backend, models, clock


def infer(backend: CachingClient, *items: InferenceItem) -> list[Outcome]:
    return asyncio.run(backend.infer("classifier", list(items)))


def label(outcome: Outcome) -> str:
    assert outcome.prediction is not None
    return str(outcome.prediction.result["predictions"][0]["label"])


def test_repeated_image_is_answered_from_the_cache() -> None:
    backend, models, _ = make()
    hits, misses = (
        sample("cv_cache_hits_total", {"model": "classifier"}),
        sample("cv_cache_misses_total", {"model": "classifier"}),
    )
    (first,) = infer(backend, item())
    (second,) = infer(backend, item())
    assert not first.cached and second.cached
    assert len(models.infer_calls) == 1
    assert second.prediction == first.prediction.model_copy(update={"timings_ms": second.prediction.timings_ms})  # type: ignore[union-attr]
    assert set(second.prediction.timings_ms) == {"cache"}  # type: ignore[union-attr]
    assert sample("cv_cache_hits_total", {"model": "classifier"}) == hits + 1
    assert sample("cv_cache_misses_total", {"model": "classifier"}) == misses + 1


def test_parameters_that_change_the_answer_change_the_key() -> None:
    backend, models, _ = make()
    infer(backend, item(top_k=5))
    (other,) = infer(backend, item(top_k=3))
    assert not other.cached and len(models.infer_calls) == 2


def test_a_batch_sends_only_its_misses_and_keeps_order() -> None:
    backend, models, _ = make()
    infer(backend, item(sha="1" * 64))
    outcomes = infer(backend, item(sha="0" * 64), item(sha="1" * 64), item(sha=None))
    assert [o.cached for o in outcomes] == [False, True, False]
    assert [i.image_sha256 for i in models.infer_calls[-1]] == ["0" * 64, None]


def test_a_new_default_version_never_returns_the_old_answer() -> None:
    backend, models, clock = make(version_ttl_s=1.0)
    (old,) = infer(backend, item())
    assert label(old) == "v1-answer"
    models.default = "v2"
    clock.now += 1.0  # the api re-reads the default at most version_ttl_s later
    (new,) = infer(backend, item())
    assert not new.cached and label(new) == "v2-answer"
    (again,) = infer(backend, item())
    assert again.cached and label(again) == "v2-answer"


def test_with_no_version_ttl_the_default_is_read_on_every_request() -> None:
    backend, models, _ = make(version_ttl_s=0)
    infer(backend, item())
    models.default = "v2"
    (new,) = infer(backend, item())
    assert not new.cached and label(new) == "v2-answer"


def test_an_answer_from_another_version_is_not_cached_and_rereads_the_default() -> None:
    backend, models, _ = make(version_ttl_s=60)
    models.answering = "v2"  # v1 is the default but v2 answered: a fallback
    (fallback,) = infer(backend, item())
    assert label(fallback) == "v2-answer"
    calls = models.status_calls
    models.answering = None
    (fresh,) = infer(backend, item())
    assert not fresh.cached and label(fresh) == "v1-answer"  # the fallback answer was not stored
    assert models.status_calls == calls + 1  # and the default was asked for again at once


def test_pinned_versions_have_their_own_entries() -> None:
    backend, _, _ = make()
    infer(backend, item(version="v2"))
    (default,) = infer(backend, item())
    (pinned,) = infer(backend, item(version="v2"))
    assert not default.cached and label(default) == "v1-answer"
    assert pinned.cached and label(pinned) == "v2-answer"


def test_reimported_version_with_new_files_gets_new_keys() -> None:
    backend, models, clock = make()
    infer(backend, item())
    models.metadata["v1"] = {"sha256": {"fp32": "ccc"}}
    clock.now += 1.0
    (after,) = infer(backend, item())
    assert not after.cached


def test_unknown_pinned_version_and_status_failures_bypass_the_cache() -> None:
    backend, models, _ = make()
    infer(backend, item(version="v9"))
    infer(backend, item(version="v9"))
    assert len(models.infer_calls) == 2
    models.status_fails = True
    backend.versions.forget("classifier")
    infer(backend, item())
    infer(backend, item())
    assert len(models.infer_calls) == 4


def test_errors_are_not_cached() -> None:
    backend, models, _ = make()
    infer(backend, item(top_k=-1))
    (again,) = infer(backend, item(top_k=-1))
    assert again.error is not None and len(models.infer_calls) == 2


def test_other_calls_pass_through() -> None:
    backend, _, _ = make()
    assert asyncio.run(backend.status("classifier"))["default_version"] == "v1"
    assert asyncio.run(backend.gallery_size()) == 3
    assert asyncio.run(backend.gallery_remove("x")) is True
    assert asyncio.run(backend.gallery_add(item(), {}))["id"] == "x"
    assert asyncio.run(backend.search([SearchItem(image=np.zeros((2, 2, 3), np.uint8))]))[0].gallery_size == 1


def test_key_is_canonical_and_digest_ignores_the_stage() -> None:
    a = cache_key(prefix="p:", model="m", identity="v1@x", params={"a": 1, "b": [2, 3]}, image_sha256=SHA)
    b = cache_key(prefix="p:", model="m", identity="v1@x", params={"b": [2, 3], "a": 1}, image_sha256=SHA)
    assert a == b and a.startswith("p:m:v1@x:") and a.endswith(SHA)
    assert version_digest({"x": 1, "stage": "production"}) == version_digest({"x": 1, "stage": "canary"})
    assert version_digest({"x": 1}) != version_digest({"x": 2})
