"""The shadow mirror: copies of answered requests, run on the shadow versions off the hot path.

The inference-log middleware (services/http/recording.py) offers a :class:`ShadowCopy` of each answered
request once its response has gone. :meth:`ShadowMirror.offer` never waits: it puts the copy in a bounded
queue, or drops it (counted in ``cv_shadow_dropped_total``) when the queue is full. Background tasks on the
api's event loop take copies from the queue, ask every shadow version of the model for the same images with the
same parameters (a pinned-version call of the raw model client: no result cache, no recording), compare each
answer with the production answer the caller got (services/shadow/agreement.py), count it in the metrics and
hand an inference-log row marked ``shadow`` to the log writer. Nothing goes back to the caller.

Which versions are shadows is read from the model services' status every ``refresh_s``, so promoting or
demoting a version needs no api restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernel.db.tables import InferenceLogCreate
from kernel.errors import ModelUnavailable, ServiceError, error_from_dict, error_to_dict
from services.clients.base import AsyncModelClient
from services.config import Stage
from services.db.records import image_columns, summarize
from services.imaging import DecodedImage
from services.metrics import SHADOW_AGREEMENT, SHADOW_DROPPED, SHADOW_LATENCY, SHADOW_REQUESTS
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from services.shadow.agreement import agreement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowItem:
    """One image of an answered request: what production was asked and what it answered."""

    index: int  # the image's position in its request (the inference log's item_index)
    image: DecodedImage
    params: dict[str, Any]
    production: Prediction


@dataclass(frozen=True)
class ShadowCopy:
    """The images of one answered request that the shadow versions of ``model`` should see too."""

    model: str
    route: str
    items: Sequence[ShadowItem]
    request_id: str | None = None
    client_id: str | None = None
    tier: str | None = None


class Sink(Protocol):
    """Where the shadow's inference-log rows go (the data plane's log writer)."""

    def submit(self, records: list[InferenceLogCreate]) -> None: ...


@dataclass
class ShadowMirror:
    """A bounded queue of :class:`ShadowCopy` and the tasks that run them on the shadow versions.

    Args:
        client: The raw model client (the one the result cache and the recording wrap).
        sink: Takes the shadow rows of the inference log.
        models: The models whose status is read for shadow versions.
        queue_size: Copies waiting at most; a copy that does not fit is dropped.
        queue_bytes: Pixel bytes the waiting copies may hold at most (they keep the decoded images alive).
        refresh_s: Seconds between two readings of the models' status.
        concurrency: Copies run at once (each one model-service call per shadow version).
        sample_rate: Share of the answered requests that are offered a copy (the shadow's load on the models).
    """

    client: AsyncModelClient
    sink: Sink
    models: Collection[str]
    queue_size: int = 64
    queue_bytes: int = 256 * 1024 * 1024
    refresh_s: float = 10.0
    concurrency: int = 1
    sample_rate: float = 1.0
    draw: Callable[[], float] = random.random
    clock: Callable[[], float] = time.perf_counter
    shadows: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model -> its shadow versions

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=self.queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._held_bytes = 0  # pixels of the copies queued or running
        self._unreachable: set[str] = set()  # models whose status failed last time (logged once)

    def offer(self, copy: ShadowCopy) -> bool:
        """Queue ``copy`` for the shadow versions of its model without waiting; False when it is not queued.

        Never raises and never blocks: called on the request's path, after its response has gone.
        """
        if not copy.items or not self.shadows.get(copy.model):
            return False
        if self.sample_rate < 1.0 and self.draw() >= self.sample_rate:
            return False
        size = _pixel_bytes(copy)
        if self.queue.full() or self._held_bytes + size > self.queue_bytes:
            SHADOW_DROPPED.labels(copy.model).inc(len(copy.items))
            return False
        self.queue.put_nowait(copy)
        self._held_bytes += size
        return True

    def start(self) -> None:
        """Start the refresher and the workers on the running event loop (the api's start-up)."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._refresh_forever(), name="shadow-refresh"))
        for n in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._work_forever(), name=f"shadow-worker-{n}"))
        log.info("shadow mirror started", extra={"queue_size": self.queue_size, "concurrency": self.concurrency})

    async def close(self) -> None:
        """Stop the tasks; copies still queued are abandoned (shadow traffic is a sample, not a duty)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        """Read each model's status and keep the versions in stage shadow that are loaded."""
        for model in self.models:
            try:
                status = await self.client.status(model)
            except Exception as exc:  # the model service is down: keep what was known, ask again later
                if model not in self._unreachable:
                    log.warning("shadow: model status unavailable", extra={"model": model, "error": repr(exc)})
                self._unreachable.add(model)
                continue
            self._unreachable.discard(model)
            found = tuple(
                str(v["version"])
                for v in status.get("versions", [])
                if v.get("stage") == Stage.SHADOW.value and v.get("state") != "down"
            )
            if found != self.shadows.get(model, ()):
                log.info("shadow versions changed", extra={"model": model, "versions": list(found)})
            self.shadows[model] = found

    async def run(self, copy: ShadowCopy) -> None:
        """Ask each shadow version of ``copy.model`` for its images; count, compare and log the answers."""
        for version in self.shadows.get(copy.model, ()):
            items = [item for item in copy.items if item.production.version != version]
            if items:
                await self._run_version(copy, version, items)

    async def _run_version(self, copy: ShadowCopy, version: str, items: list[ShadowItem]) -> None:
        calls = [
            InferenceItem(image=i.image.pixels, params=i.params, version=version, request_id=copy.request_id)
            for i in items
        ]
        started = self.clock()
        outcomes = await self._infer(copy.model, calls)
        elapsed = self.clock() - started
        SHADOW_LATENCY.labels(copy.model, version).observe(elapsed)
        records = [
            self._record(copy, version, item, outcome, elapsed) for item, outcome in zip(items, outcomes, strict=True)
        ]
        try:
            self.sink.submit(records)
        except Exception:  # the log writer only appends to a buffer; a bug there must not stop the mirror
            log.exception("shadow: inference log record failed")

    async def _infer(self, model: str, calls: list[InferenceItem]) -> list[Outcome]:
        """The shadow's outcomes; a failed call becomes an error outcome per image."""
        try:
            outcomes = await self.client.infer(model, calls)
            if len(outcomes) == len(calls):
                return outcomes
            error: ServiceError = ModelUnavailable(f"the {model} service answered {len(outcomes)} of {len(calls)}")
        except ServiceError as exc:
            error = exc
        except Exception as exc:
            log.warning("shadow call failed", extra={"model": model, "error": repr(exc)})
            error = ModelUnavailable(f"the shadow call to {model} failed")
        return [Outcome(error=error_to_dict(error)) for _ in calls]

    def _record(
        self, copy: ShadowCopy, version: str, item: ShadowItem, outcome: Outcome, elapsed: float
    ) -> InferenceLogCreate:
        """Count the shadow's answer to one image and make its inference-log row."""
        prediction = outcome.prediction
        score = agreement(item.production.result, prediction.result) if prediction is not None else None
        outcome_label = "error" if prediction is None else ("incomparable" if score is None else "compared")
        SHADOW_REQUESTS.labels(copy.model, version, outcome_label).inc()
        if score is not None:
            SHADOW_AGREEMENT.labels(copy.model, version).observe(score)
        error = error_from_dict(outcome.error or {}) if prediction is None else None
        return InferenceLogCreate(
            request_id=copy.request_id,
            client_id=copy.client_id,
            tier=copy.tier,
            route=copy.route,
            item_index=item.index,
            model=copy.model,
            version=version,
            precision=prediction.precision if prediction else None,
            status=200 if error is None else error.status_code,
            latency_ms=round(elapsed * 1000, 3),
            error_type=error.type_slug if error is not None else None,
            shadow=True,
            agreement=score,
            **image_columns(item.image),
            **(summarize(prediction.result) if prediction else {}),
        )

    async def _refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def _work_forever(self) -> None:
        while True:
            copy = await self.queue.get()
            try:
                await self.run(copy)
            except Exception:  # one bad copy must not end the worker
                log.exception("shadow copy failed", extra={"model": copy.model})
            finally:
                self._held_bytes -= _pixel_bytes(copy)
                self.queue.task_done()


def _pixel_bytes(copy: ShadowCopy) -> int:
    return sum(int(item.image.pixels.nbytes) for item in copy.items)
