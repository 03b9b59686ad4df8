"""services/dispatch.py: BentoML's own dispatcher, driven as a model service drives it, with and without RunWhenFree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from bentoml._internal.marshal import dispatcher
from bentoml._internal.marshal.dispatcher import CorkDispatcher

from services.dispatch import RunWhenFree, run_when_free

BENTOML_OPTIMIZER: type[dispatcher.Optimizer] = RunWhenFree.__bases__[0]  # whatever the module holds now
RUN_S = 0.004  # what one batch of the stand-in model takes
LEARNED_WAIT_S = 0.2  # the mean queue wait after a burst: batches waited behind the one running


def _learned_after_a_burst(optimizer: dispatcher.Optimizer) -> dispatcher.Optimizer:
    """The optimizer as a burst leaves it: 50 full batches that each waited LEARNED_WAIT_S in the queue."""
    for _ in range(BENTOML_OPTIMIZER.N_KEPT_SAMPLE + BENTOML_OPTIMIZER.N_SKIPPED_SAMPLE):
        optimizer.log_outbound(n=16, wait=LEARNED_WAIT_S, duration=16 * RUN_S)
    optimizer.trigger_refresh()
    return optimizer


async def _drive(optimizer: dispatcher.Optimizer) -> tuple[float, list[int]]:
    """(seconds a lone call took once ``optimizer`` is in place, the sizes of the batches of a concurrent burst)."""
    batches: list[int] = []

    async def model(items: Sequence[int]) -> list[int]:
        batches.append(len(items))
        await asyncio.sleep(RUN_S)
        return list(items)

    cork = CorkDispatcher(max_latency_in_ms=5000, max_batch_size=16, fallback=lambda: -1, get_batch_size=lambda _: 1)
    call = cork(model)
    for i in range(20):  # BentoML's start-up training of its optimizer: sequential calls
        assert await call(i) == i
    cork.optimizer = optimizer
    started = time.perf_counter()
    assert await call(100) == 100
    lone_s = time.perf_counter() - started
    batches.clear()
    results = await asyncio.gather(*(call(i) for i in range(9)))
    assert results == list(range(9))
    cork.shutdown()
    return lone_s, batches


def test_bentoml_alone_holds_a_lone_call_back_for_its_learned_wait() -> None:
    """The behaviour ADR 0020 removes, on the pinned BentoML: if this fails, BentoML changed its dispatcher."""
    optimizer = _learned_after_a_burst(BENTOML_OPTIMIZER(5.0))
    assert optimizer.wait == pytest.approx(LEARNED_WAIT_S)
    lone_s, _ = asyncio.run(_drive(optimizer))
    assert lone_s >= LEARNED_WAIT_S * 0.9


def test_run_when_free_starts_a_lone_call_at_once_and_still_merges_a_burst() -> None:
    optimizer = _learned_after_a_burst(RunWhenFree(5.0))
    assert optimizer.wait == 0.0
    assert optimizer.o_a == pytest.approx(RUN_S, rel=0.01)  # the batch-cost fit (and so the shedding) is kept
    lone_s, batches = asyncio.run(_drive(optimizer))
    assert lone_s < LEARNED_WAIT_S / 4
    assert sum(batches) == 9
    assert max(batches) > 1  # calls that came while a batch ran went together


def test_run_when_free_is_what_new_dispatchers_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "Optimizer", dispatcher.Optimizer)  # restored after the test
    run_when_free()
    run_when_free()
    cork = CorkDispatcher(max_latency_in_ms=5000, max_batch_size=16, fallback=lambda: -1)
    assert type(cork.optimizer) is RunWhenFree


def test_the_model_services_install_it() -> None:
    import services.model_service  # noqa: F401  # installs it at import

    assert dispatcher.Optimizer is RunWhenFree
