"""Micro-batching of the models in the api process (``CV_MODELS_IN_PROCESS``): a few runs per model at a time.

Up to ``max_runs`` batches of one model run at once, each in a thread; the calls that arrive while all of them run
wait, and the next run to end takes them as one batch (up to ``max_batch_size`` images). A lone call runs at once,
so concurrency 1 waits for nothing; while it is the only request the process serves and its images are small it runs
on the event loop (``inline_max_pixels``), two thread hand-offs less. Two runs (``CV_MAX_CONCURRENT_RUNS``, the
default) overlap one batch's Python work (preprocessing, postprocessing) with the other's ONNX Runtime call, which a
single run leaves idle (benchmarks/reports/peers.md: one run at a time answered 49.8 detect req/s at c=16, unbatched
calls 61.7).
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.concurrency import run_in_threadpool

from services.clients.base import AsyncClientWrapper, ModelClient
from services.clients.threaded import ThreadedClient
from services.models.runtime import may_run_inline
from services.models.worker import InferenceItem, Outcome

Waiting = tuple[list[InferenceItem], "asyncio.Future[list[Outcome]]"]


class MicroBatchingClient(AsyncClientWrapper):
    """An async client over blocking models (InProcessClient) that merges concurrent ``infer`` calls per model."""

    def __init__(self, models: ModelClient, max_batch_size: int, max_runs: int = 1, inline_max_pixels: int = 0) -> None:
        super().__init__(ThreadedClient(models))
        self.models = models
        self.max_batch_size = max_batch_size
        self.max_runs = max_runs
        self.inline_max_pixels = inline_max_pixels
        self._queues: dict[str, deque[Waiting]] = {}
        self._draining: dict[str, set[asyncio.Task[None]]] = {}

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(model, deque()).append((items, future))
        running = self._draining.setdefault(model, set())
        if len(running) < self.max_runs:
            task = asyncio.create_task(self._drain(model))
            running.add(task)
        return await future

    def _next_batch(self, queue: deque[Waiting]) -> list[Waiting]:
        batch = [queue.popleft()]
        size = len(batch[0][0])
        while queue and size + len(queue[0][0]) <= self.max_batch_size:
            batch.append(queue.popleft())
            size += len(batch[-1][0])
        return batch

    def _inline(self, model: str, items: list[InferenceItem]) -> bool:
        """Run on the event loop: the process serves this call alone (no other run of the model, nothing else
        admitted) and its images are small (ServingSettings.inline_alone_max_pixels), so the run is a few ms."""
        if len(self._draining.get(model, ())) > 1 or not may_run_inline(self.inline_max_pixels):
            return False
        return all(item.image.shape[0] * item.image.shape[1] <= self.inline_max_pixels for item in items)

    async def _drain(self, model: str) -> None:
        queue = self._queues[model]
        try:
            while queue:
                batch = self._next_batch(queue)
                items = [item for waiting, _ in batch for item in waiting]
                try:
                    if self._inline(model, items):
                        outcomes = self.models.infer(model, items)
                    else:
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
            # At once, with no await after the queue was seen empty: a call arriving now starts a new run.
            self._draining[model].discard(asyncio.current_task())
