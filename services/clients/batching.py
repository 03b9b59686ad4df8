"""Micro-batching of the models in the api process (``CV_MODELS_IN_PROCESS``): one run per model at a time.

While a model runs a batch in a thread, the calls that arrive for it wait; when the run ends they go as one batch
(up to ``max_batch_size`` images). A lone call runs at once, so concurrency 1 waits for nothing, and concurrent calls
never run concurrent ONNX Runtime sessions of one model that would fight over the same cores.
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.concurrency import run_in_threadpool

from services.clients.base import AsyncClientWrapper, ModelClient
from services.clients.threaded import ThreadedClient
from services.models.worker import InferenceItem, Outcome

Waiting = tuple[list[InferenceItem], "asyncio.Future[list[Outcome]]"]


class MicroBatchingClient(AsyncClientWrapper):
    """An async client over blocking models (InProcessClient) that merges concurrent ``infer`` calls per model."""

    def __init__(self, models: ModelClient, max_batch_size: int) -> None:
        super().__init__(ThreadedClient(models))
        self.models = models
        self.max_batch_size = max_batch_size
        self._queues: dict[str, deque[Waiting]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(model, deque()).append((items, future))
        if model not in self._draining:
            self._draining[model] = asyncio.create_task(self._drain(model))
        return await future

    def _next_batch(self, queue: deque[Waiting]) -> list[Waiting]:
        batch = [queue.popleft()]
        size = len(batch[0][0])
        while queue and size + len(queue[0][0]) <= self.max_batch_size:
            batch.append(queue.popleft())
            size += len(batch[-1][0])
        return batch

    async def _drain(self, model: str) -> None:
        queue = self._queues[model]
        try:
            while queue:
                batch = self._next_batch(queue)
                items = [item for waiting, _ in batch for item in waiting]
                try:
                    outcomes = await run_in_threadpool(self.models.infer, model, items)
                except Exception as exc:  # the callers' error, each raised where it awaits
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for waiting, future in batch:
                    if not future.done():
                        future.set_result(outcomes[start : start + len(waiting)])
                    start += len(waiting)
        finally:
            del self._draining[model]
