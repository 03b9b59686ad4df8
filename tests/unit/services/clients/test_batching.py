"""MicroBatchingClient: concurrent infer calls of one model become one run; results and errors go to their callers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from services.clients.batching import MicroBatchingClient
from services.models.worker import InferenceItem, Outcome


class Models:
    """A blocking model client that records each run's size and can hold the first run until told."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.runs: list[tuple[str, list[str | None]]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        if not self.runs:
            self.release.wait(5)
        self.runs.append((model, [item.request_id for item in items]))
        if self.fail_on in [item.request_id for item in items]:
            raise RuntimeError("model crashed")
        return [Outcome(error={"id": item.request_id}) for item in items]

    def status(self, model: str) -> dict[str, Any]:
        return {"model": model}


def item(request_id: str) -> InferenceItem:
    return InferenceItem(image=np.zeros((2, 2, 3), np.uint8), request_id=request_id)


async def _calls(client: MicroBatchingClient, models: Models, names: list[str]) -> list[Any]:
    first = asyncio.create_task(client.infer("classifier", [item("first")]))
    await asyncio.sleep(0.05)  # the first run has started and holds
    rest = [asyncio.create_task(client.infer("classifier", [item(name)])) for name in names]
    await asyncio.sleep(0.05)
    models.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_calls_that_wait_for_a_run_go_as_one_batch_in_order() -> None:
    models = Models()
    client = MicroBatchingClient(models, max_batch_size=16)  # type: ignore[arg-type]
    answers = asyncio.run(_calls(client, models, ["a", "b", "c"]))
    assert models.runs == [("classifier", ["first"]), ("classifier", ["a", "b", "c"])]
    assert [[o.error for o in outcomes] for outcomes in answers] == [[{"id": n}] for n in ("first", "a", "b", "c")]


def test_a_batch_holds_at_most_max_batch_size_images() -> None:
    models = Models()
    client = MicroBatchingClient(models, max_batch_size=2)  # type: ignore[arg-type]
    asyncio.run(_calls(client, models, ["a", "b", "c"]))
    assert [ids for _, ids in models.runs] == [["first"], ["a", "b"], ["c"]]


def test_a_failed_run_fails_its_callers_only() -> None:
    models = Models(fail_on="b")
    client = MicroBatchingClient(models, max_batch_size=2)  # type: ignore[arg-type]
    answers = asyncio.run(_calls(client, models, ["a", "b", "c"]))
    assert [type(a).__name__ for a in answers] == ["list", "RuntimeError", "RuntimeError", "list"]


def test_other_calls_pass_through() -> None:
    client = MicroBatchingClient(Models(), max_batch_size=2)  # type: ignore[arg-type]
    assert asyncio.run(client.status("detector")) == {"model": "detector"}


@pytest.mark.parametrize("size", [1, 3])
def test_a_lone_call_runs_at_once(size: int) -> None:
    models = Models()
    models.release.set()
    client = MicroBatchingClient(models, max_batch_size=4)  # type: ignore[arg-type]
    outcomes = asyncio.run(client.infer("detector", [item(str(i)) for i in range(size)]))
    assert len(outcomes) == size and models.runs == [("detector", [str(i) for i in range(size)])]


class HeldModels(Models):
    """Every run holds until released, so the test sees which runs were in flight together."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[list[str | None]] = []
        self.lock = threading.Lock()

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        with self.lock:
            self.started.append([item.request_id for item in items])
        self.release.wait(5)
        self.runs.append((model, [item.request_id for item in items]))
        return [Outcome(error={"id": item.request_id}) for item in items]


def test_up_to_max_runs_batches_of_one_model_run_together() -> None:
    async def scenario() -> tuple[list[list[str | None]], list[Any]]:
        models = HeldModels()
        client = MicroBatchingClient(models, max_batch_size=16, max_runs=2)  # type: ignore[arg-type]
        first = asyncio.create_task(client.infer("classifier", [item("first")]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.infer("classifier", [item("second")]))  # a free run: starts at once
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(client.infer("classifier", [item(n)])) for n in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        in_flight = list(models.started)
        models.release.set()
        answers = await asyncio.gather(first, second, *rest)
        return in_flight, answers

    in_flight, answers = asyncio.run(scenario())
    assert in_flight == [["first"], ["second"]]  # both runs started before either ended; a, b, c waited
    assert [[o.error for o in outcomes] for outcomes in answers] == [
        [{"id": n}] for n in ("first", "second", "a", "b", "c")
    ]


def test_a_call_after_every_run_ended_starts_a_new_one() -> None:
    async def scenario() -> list[Outcome]:
        models = Models()
        models.release.set()
        client = MicroBatchingClient(models, max_batch_size=4, max_runs=2)  # type: ignore[arg-type]
        await asyncio.gather(*(client.infer("detector", [item(str(i))]) for i in range(5)))
        await asyncio.sleep(0)
        assert not client._draining["detector"]  # every run task removed itself when its queue was empty
        return await asyncio.wait_for(client.infer("detector", [item("late")]), 5)

    assert [o.error for o in asyncio.run(scenario())] == [{"id": "late"}]


class ThreadNoting(Models):
    """Notes the thread each run ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.threads: list[int] = []

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        self.threads.append(threading.get_ident())
        return super().infer(model, items)


async def _on_loop(client: MicroBatchingClient, items: list[InferenceItem]) -> int:
    await client.infer("classifier", items)
    return threading.get_ident()


@pytest.mark.parametrize(
    ("inline_max_pixels", "demand", "side", "on_loop"),
    [
        (16, 1, 2, True),  # alone, small: on the event loop
        (16, 0, 2, True),  # nothing counts demand (the admission control is off): the runs in flight decide
        (16, 2, 2, False),  # another request is being served: in a thread
        (16, 1, 5, False),  # 25 pixels > 16: in a thread
        (0, 1, 2, False),  # off
    ],
)
def test_a_lone_small_call_runs_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, inline_max_pixels: int, demand: int, side: int, on_loop: bool
) -> None:
    from services.models import runtime

    monkeypatch.setattr(runtime.DEMAND, "_count", demand)
    models = ThreadNoting()
    client = MicroBatchingClient(models, max_batch_size=4, inline_max_pixels=inline_max_pixels)  # type: ignore[arg-type]
    image = InferenceItem(image=np.zeros((side, side, 3), np.uint8), request_id="x")
    loop_thread = asyncio.run(_on_loop(client, [image]))
    assert (models.threads == [loop_thread]) is on_loop
    assert models.runs == [("classifier", ["x"])]


def test_a_call_while_another_run_of_the_model_is_in_flight_goes_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.models import runtime

    models = HeldModels()
    client = MicroBatchingClient(models, max_batch_size=1, max_runs=2, inline_max_pixels=1 << 20)  # type: ignore[arg-type]
    threads: dict[str | None, int] = {}
    held = models.infer

    def noting(model: str, items: list[InferenceItem]) -> list[Outcome]:
        threads[items[0].request_id] = threading.get_ident()
        return held(model, items)

    models.infer = noting  # type: ignore[method-assign]

    async def scenario() -> int:
        monkeypatch.setattr(runtime.DEMAND, "_count", 2)  # the first goes to a thread, where it holds its run
        first = asyncio.create_task(client.infer("classifier", [item("a")]))
        await asyncio.sleep(0.05)
        monkeypatch.setattr(runtime.DEMAND, "_count", 1)  # now alone by the count, but "a" still runs
        second = asyncio.create_task(client.infer("classifier", [item("b")]))
        await asyncio.sleep(0.05)
        models.release.set()
        await asyncio.gather(first, second)
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert sorted(threads) == ["a", "b"]
    assert loop_thread not in threads.values()
