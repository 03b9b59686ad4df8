"""The api's side of batch jobs: accept a job, report its progress, cancel it.

A job is its rows (``batch_job``, ``batch_job_item``) plus one broker message per chunk of
``chunk_size`` items, naming the job and the item indices only; the images are in the
:class:`~services.jobs.store.ImageStore`. The rows are committed before the messages are sent,
so a worker never receives a job it cannot find; the api answers 202 only once both are done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from kernel.db.tables import BatchJobCreate, BatchJobItemCreate
from kernel.errors import JobsUnavailable
from services.config import ServingSettings
from services.db import jobs as jobs_db
from services.db.jobs import JobProgress
from services.db.logs import create_batch_job
from services.jobs.heartbeat import backlog, workers_health
from services.jobs.store import ImageStore
from services.metrics import JOB_OLDEST_ACTIVE_AGE, JOB_WORKERS_LIVE, JOBS_ACTIVE, JOBS_SUBMITTED
from services.sequences import batched

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Sends the chunk messages of a job to the workers."""

    def send(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None: ...

    def waiting(self) -> int:
        """Messages in the queue that no worker has taken yet."""
        ...


class CeleryDispatcher:
    """Publishes one ``process_chunk`` message per chunk, by task name (the api does not import the task code)."""

    def __init__(self, app: Any, queue: str) -> None:
        self.app = app
        self.queue = queue

    def send(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None:
        from services.jobs.celery_factory import TASK_NAME  # Celery and kombu load only where jobs are sent

        with self.app.producer_or_acquire() as producer:
            for chunk in chunks:
                self.app.send_task(
                    TASK_NAME,
                    args=[job_id, chunk],
                    queue=self.queue,
                    producer=producer,
                    headers={"request_id": request_id},
                )

    def waiting(self) -> int:
        # Delivered but unacknowledged messages (held by a worker, or by a dead one until the visibility
        # timeout restores them) are not counted, on Redis as on the local broker.
        with self.app.connection_for_write() as connection:
            return int(connection.default_channel.queue_declare(queue=self.queue).message_count)


@dataclass(frozen=True)
class StagedImage:
    """One uploaded image, in the job store under ``key`` (checked by the worker when it decodes it)."""

    filename: str | None
    content_type: str | None
    key: str
    sha256: str


class JobQueue:
    """Accepts, reports and cancels jobs (the api's composition root builds one)."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: ImageStore,
        dispatcher: Dispatcher,
        chunk_size: int,
        heartbeat_interval_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.dispatcher = dispatcher
        self.chunk_size = chunk_size
        self.heartbeat_interval_s = heartbeat_interval_s

    @classmethod
    def from_settings(cls, settings: ServingSettings, *, engine: Engine) -> JobQueue:
        from services.jobs.celery_factory import create_celery

        dispatcher = CeleryDispatcher(create_celery(settings), settings.jobs_queue)
        return cls(
            engine=engine,
            store=ImageStore(settings.job_store),
            dispatcher=dispatcher,
            chunk_size=settings.jobs_chunk_size,
            heartbeat_interval_s=settings.jobs_heartbeat_interval_s,
        )

    def health(self) -> dict[str, Any]:
        """Live workers and active jobs (``degraded``: jobs wait and nobody works them, or no database)."""
        try:
            return workers_health(self.engine, interval_s=self.heartbeat_interval_s)
        except SQLAlchemyError:
            return {"status": "degraded", "error": "the job database is unreachable"}

    def record_metrics(self) -> None:
        """Set the job gauges (workers, active jobs, oldest job's age) from the database; unchanged if unreachable."""
        try:
            numbers = backlog(self.engine, interval_s=self.heartbeat_interval_s)
        except SQLAlchemyError:
            log.warning("job metrics: the job database is unreachable", exc_info=True)
            return
        JOB_WORKERS_LIVE.set(numbers["workers"])
        JOBS_ACTIVE.set(numbers["active_jobs"])
        JOB_OLDEST_ACTIVE_AGE.set(numbers["oldest_active_age_s"])

    def submit(
        self,
        *,
        task: str,
        params: dict[str, Any],
        version: str | None,
        images: Sequence[StagedImage],
        request_id: str | None,
        client_id: str | None = None,
        tier: str | None = None,
        job_id: str | None = None,
    ) -> JobProgress:
        """Store the job and send its chunks; the job as accepted.

        ``job_id``: the id the images were stored under (``ImageStore.put_file``); they are released if the job
        cannot be taken.

        Raises:
            JobsUnavailable: The database or the broker cannot take it (nothing is left queued).
        """
        job = BatchJobCreate(
            task=task, params=params, version=version, request_id=request_id, client_id=client_id, tier=tier
        )
        items = [
            BatchJobItemCreate(
                item_index=i,
                filename=(s.filename or "")[:256] or None,
                image_sha256=s.sha256,
                input_uri=s.key,
                content_type=(s.content_type or "")[:128] or None,
            )
            for i, s in enumerate(images)
        ]
        try:
            with Session(self.engine) as session:
                job_id = create_batch_job(session=session, job=job, items=items, job_id=job_id).id
                session.commit()
        except Exception as exc:
            log.error("job not stored", extra={"error": repr(exc)})
            if job_id:
                self.store.release(job_id)
            raise JobsUnavailable("the job database is unavailable; try again later") from exc
        chunks = [list(chunk) for chunk in batched(range(len(items)), self.chunk_size)]
        try:
            self.dispatcher.send(job_id, chunks, request_id)
        except Exception as exc:
            log.error("job not queued", extra={"job_id": job_id, "error": repr(exc)})
            self._cancel_unqueued(job_id)
            self.store.release(job_id)
            raise JobsUnavailable("the job broker is unavailable; try again later") from exc
        JOBS_SUBMITTED.labels(task).inc()
        log.info("job accepted", extra={"job_id": job_id, "items": len(items), "chunks": len(chunks)})
        progress = self.progress(job_id, limit=0)
        assert progress is not None
        return progress

    def _cancel_unqueued(self, job_id: str) -> None:
        try:
            with Session(self.engine) as session:
                jobs_db.cancel_job(session=session, job_id=job_id)
                session.commit()
        except Exception:  # the caller is told 503 either way; a leftover row is only a queued job no one waits for
            log.exception("could not withdraw a job that was not queued", extra={"job_id": job_id})

    def progress(self, job_id: str, *, offset: int = 0, limit: int = 100) -> JobProgress | None:
        """The job with its counts and one page of items; None when unknown."""
        with Session(self.engine) as session:
            progress = jobs_db.job_progress(session=session, job_id=job_id, offset=offset, limit=limit)
            if progress is not None:
                session.expunge_all()
            return progress

    def cancel(self, job_id: str) -> tuple[JobProgress | None, bool]:
        """Cancel an active job: (the job, whether this call cancelled it)."""
        with Session(self.engine) as session:
            cancelled = jobs_db.cancel_job(session=session, job_id=job_id)
            session.commit()
        if cancelled:
            log.info("job cancelled", extra={"job_id": job_id})
            # A worker in the middle of one of its chunks finds an image gone: its answer is dropped anyway
            # (items are answered only while pending, and these are cancelled now).
            self.store.release(job_id)
        return self.progress(job_id, limit=0), cancelled
