"""What a job worker does with one chunk of a job: read, decode, infer, and answer each item once.

- **Idempotent**: only ``pending`` items are worked on, and each answer is written only if the item
  is still pending, with its inference-log row in the same transaction (a deterministic
  ``event_id`` per ``(job_id, item_index)``). A chunk delivered twice (a worker killed before it
  acknowledged, a visibility timeout shorter than a slow chunk) answers nothing twice. The log row
  is written here, not through the api's buffered writer: a buffer dies with a killed worker.
- **Poison items fail alone**: a bad image (the ``ServiceError`` client errors) or a model that
  fails on one input (``InferenceFailed``) is that item's problem body, not a retry and not the
  job's failure. An item whose processing kills the worker is found by ``attempts`` (a worker's
  start on the item, taken back when it leaves cleanly): on a delivery that finds any, the chunk
  runs one item at a time, and an item that has taken ``max_worker_losses`` workers down is failed
  without running it again.
- **Transient failures** (model service unavailable or unreachable) leave the items pending and ask
  for a retry with exponential backoff; after ``max_retries`` they fail with the 503 problem.
- **Cancelled** jobs are skipped; items answered after a cancel are not written.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import ACTIVE_JOB_STATUSES, BatchJob, BatchJobItem, InferenceLogCreate
from kernel.errors import (
    ImageMissing,
    InferenceFailed,
    ModelUnavailable,
    ServiceError,
    WorkerLost,
    error_from_dict,
    problem_from_error,
)
from kernel.logging import bind_request_id, reset_request_id
from services.clients.base import ModelClient
from services.config import ServingSettings
from services.db import jobs as jobs_db
from services.db.jobs import ItemResult
from services.db.records import drift_features, image_columns, summarize
from services.imaging import DecodedImage, DecodeFloor, decode_image
from services.jobs.store import ImageStore
from services.metrics import JOB_ITEMS
from services.models.catalogue import JOB_TASKS, decode_floor, image_params
from services.models.worker import InferenceItem, Outcome

log = logging.getLogger(__name__)

JOB_ROUTE = "/api/v1/batch"
_EVENT_NAMESPACE = uuid.UUID("3f0c8a52-8d3e-4b8e-9a7e-5f1d2c3b4a69")


def item_event_id(job_id: str, item_index: int) -> str:
    """The inference-log ``event_id`` of a job item: the same on every run, so the row is written once."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{job_id}:{item_index}").hex


def backoff_s(attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: ``base * 2**attempt`` capped at ``max_s``, times 0.5 to 1."""
    return min(base_s * 2**attempt, max_s) * (0.5 + rand() / 2)


def is_transient(error: ServiceError) -> bool:
    """Worth trying again later: nothing could serve (503), not a verdict on the input."""
    return isinstance(error, ModelUnavailable) or error.status_code == 503


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 1.0
    max_s: float = 60.0
    max_worker_losses: int = 3


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


class ChunkProcessor:
    """Processes chunks of jobs against a database, an image store and the models."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: ImageStore,
        models: ModelClient,
        limits: ImageLimits,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.perf_counter,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.store = store
        self.models = models
        self.limits = limits
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._rand = rand

    def process(self, job_id: str, indices: Sequence[int], *, attempt: int = 0) -> float | None:
        """Answer the pending items among ``indices``.

        Args:
            job_id: The job.
            indices: Item indices of this chunk.
            attempt: How many times this chunk was already retried for transient failures.

        Returns:
            Seconds to wait before retrying the items that met a transient failure, or None when every
            item is answered (or the job is gone, finished or cancelled).
        """
        with Session(self.engine, expire_on_commit=False) as session:
            job = jobs_db.start_job(session=session, job_id=job_id)
            session.commit()
            if job is None:
                log.info("job not active; chunk skipped", extra={"job_id": job_id})
                return None
            session.expunge(job)
            items = jobs_db.pending_items(session=session, job_id=job_id, indices=indices)
            for item in items:
                session.expunge(item)
        if not items:
            return None
        token = bind_request_id(job.request_id)
        try:
            return self._process(job, items, attempt)
        finally:
            reset_request_id(token)

    def _process(self, job: BatchJob, items: list[BatchJobItem], attempt: int) -> float | None:
        poisoned = [i for i in items if i.attempts >= self.policy.max_worker_losses]
        if poisoned:
            lost = [
                self._failure(job, i, WorkerLost(f"{i.attempts} workers died processing this item"), None)
                for i in poisoned
            ]
            self._record(job, lost)
        rest = [i for i in items if i.attempts < self.policy.max_worker_losses]
        # A worker died on this chunk before: one item at a time, so only the item that kills it is repeated.
        groups = [[i] for i in rest] if any(i.attempts for i in rest) else [rest] if rest else []
        transient: dict[int, tuple[BatchJobItem, ServiceError]] = {}
        for group in groups:
            indices = [i.item_index for i in group]
            self._attempts(job.id, indices, +1)
            finals, failed = self._run(job, group)
            self._record(job, finals)
            if failed:
                self._attempts(job.id, list(failed), -1)  # the worker leaves these cleanly: no loss to count
                transient.update(failed)
        if not transient:
            return None
        if attempt < self.policy.max_retries:
            JOB_ITEMS.labels(job.task, "retried").inc(len(transient))
            delay = backoff_s(attempt, base_s=self.policy.base_s, max_s=self.policy.max_s, rand=self._rand)
            log.warning(
                "model unavailable; chunk retried", extra={"job_id": job.id, "items": len(transient), "in_s": delay}
            )
            return delay
        self._record(job, [self._failure(job, item, error, None) for item, error in transient.values()])
        return None

    def _run(
        self, job: BatchJob, group: list[BatchJobItem]
    ) -> tuple[list[ItemResult], dict[int, tuple[BatchJobItem, ServiceError]]]:
        started = self._clock()
        finals: list[ItemResult] = []
        decoded: list[tuple[BatchJobItem, DecodedImage]] = []
        for item in group:
            try:
                decoded.append((item, self._decode(item, decode_floor(JOB_TASKS[job.task]))))
            except ServiceError as exc:
                finals.append(self._failure(job, item, exc, None, started))
        if not decoded:
            return finals, {}
        requests = [
            InferenceItem(
                image=image.pixels,
                params=image_params(JOB_TASKS[job.task], image, job.params),
                version=job.version,
                request_id=job.request_id,
                image_sha256=image.sha256,
            )
            for _, image in decoded
        ]
        try:
            outcomes = self.models.infer(JOB_TASKS[job.task], requests)
        except Exception as exc:
            error = exc if isinstance(exc, ServiceError) else _unexpected(exc)
            if not is_transient(error):
                return finals + [self._failure(job, i, error, img, started) for i, img in decoded], {}
            return finals, {item.item_index: (item, error) for item, _ in decoded}
        transient: dict[int, tuple[BatchJobItem, ServiceError]] = {}
        for (item, image), outcome in zip(decoded, outcomes, strict=True):
            if outcome.prediction is not None:
                finals.append(self._success(job, item, image, outcome, started))
                continue
            error = error_from_dict(outcome.error or {})
            if is_transient(error):
                transient[item.item_index] = (item, error)
            else:
                finals.append(self._failure(job, item, error, image, started))
        return finals, transient

    def _decode(self, item: BatchJobItem, floor: DecodeFloor | None) -> DecodedImage:
        try:
            data = self.store.read(item.input_uri or "")
        except (FileNotFoundError, ValueError) as exc:
            raise ImageMissing(f"image of item {item.item_index} is not in the job store") from exc
        return decode_image(
            data,
            declared_type=item.content_type,
            max_bytes=self.limits.max_bytes,
            max_pixels=self.limits.max_pixels,
            floor=floor,
        )

    def _success(
        self, job: BatchJob, item: BatchJobItem, image: DecodedImage, outcome: Outcome, started: float
    ) -> ItemResult:
        assert outcome.prediction is not None
        prediction = outcome.prediction
        elapsed_ms = (self._clock() - started) * 1000
        body = {
            **prediction.result,
            "request_id": job.request_id,
            "model": {"name": prediction.model, "version": prediction.version, "precision": prediction.precision},
            "experiment": None,  # batch jobs are left out of A/B experiments
            "arm": None,
            "image": {
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "sha256": image.sha256,
                "bytes": image.byte_size,
            },
            "cached": outcome.cached,
            "timings_ms": {**prediction.timings_ms, "total": elapsed_ms},
        }
        record = self._log(job, item, image, 200, elapsed_ms, error_type=None)
        record.model, record.version, record.precision = prediction.model, prediction.version, prediction.precision
        for key, value in summarize(prediction.result).items():
            setattr(record, key, value)
        record.features = drift_features(image.pixels, prediction, (image.width, image.height))
        return ItemResult(item.item_index, 200, result=body, log=record)

    def _failure(
        self,
        job: BatchJob,
        item: BatchJobItem,
        error: ServiceError,
        image: DecodedImage | None,
        started: float | None = None,
    ) -> ItemResult:
        elapsed_ms = (self._clock() - started) * 1000 if started is not None else 0.0
        problem = problem_from_error(
            error, instance=f"/api/v1/jobs/{job.id}#{item.item_index}", request_id=job.request_id
        )
        record = self._log(job, item, image, error.status_code, elapsed_ms, error_type=error.type_slug)
        return ItemResult(item.item_index, error.status_code, error=problem, log=record)

    def _log(
        self,
        job: BatchJob,
        item: BatchJobItem,
        image: DecodedImage | None,
        status: int,
        latency_ms: float,
        *,
        error_type: str | None,
    ) -> InferenceLogCreate:
        return InferenceLogCreate(
            event_id=item_event_id(job.id, item.item_index),
            request_id=job.request_id,
            client_id=job.client_id,
            tier=job.tier,
            route=JOB_ROUTE,
            item_index=item.item_index,
            job_id=job.id,
            model=JOB_TASKS[job.task],
            status=status,
            latency_ms=round(latency_ms, 3),
            error_type=error_type,
            **{**image_columns(image), "image_sha256": image.sha256 if image else item.image_sha256},
        )

    def _record(self, job: BatchJob, results: list[ItemResult]) -> None:
        if not results:
            return
        with Session(self.engine) as session:
            answered = jobs_db.record_results(session=session, job_id=job.id, results=results)
            session.commit()
            finished = session.get(BatchJob, job.id, populate_existing=True)
            ended = finished is not None and finished.status not in ACTIVE_JOB_STATUSES
        for result in answered:
            JOB_ITEMS.labels(job.task, result.status).inc()
        log.info("job items answered", extra={"job_id": job.id, "items": len(results), "new": len(answered)})
        if ended and self.store.release(job.id):  # every item is answered: nothing reads these images again
            log.info("job images released", extra={"job_id": job.id})

    def _attempts(self, job_id: str, indices: list[int], delta: int) -> None:
        with Session(self.engine) as session:
            jobs_db.add_attempts(session=session, job_id=job_id, indices=indices, delta=delta)
            session.commit()


def _unexpected(exc: Exception) -> ServiceError:
    # Not an outage the model client recognised (they turn those into ModelUnavailable): a bug that a retry would
    # repeat. The items fail with a 500 rather than leave the job running forever.
    log.exception("unexpected error from the model call", exc_info=exc)
    return InferenceFailed("an unexpected error occurred running the model; quote the request id")


def settings_policy(settings: ServingSettings) -> RetryPolicy:
    """The retry policy from ``ServingSettings``."""
    return RetryPolicy(
        max_retries=settings.jobs_max_retries,
        base_s=settings.jobs_retry_backoff_s,
        max_s=settings.jobs_retry_backoff_max_s,
        max_worker_losses=settings.jobs_max_worker_losses,
    )
