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
