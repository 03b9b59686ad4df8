"""The Celery task of the job workers, and the per-process objects it works with.

Each worker process (a prefork child) builds its database engine, image store and model client
on its first task, after the fork, so no connection is shared across processes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError

from kernel.db.session import create_db_engine
from services.clients.jobs import job_client
from services.config import get_settings
from services.drift.monitor import DriftMonitor, DriftPolicy
from services.jobs.celery_factory import DRIFT_TASK_NAME, TASK_NAME
from services.jobs.processing import ChunkProcessor, ImageLimits, backoff_s, settings_policy
from services.jobs.store import ImageStore


@lru_cache(maxsize=1)
def processor() -> ChunkProcessor:
    """This process's chunk processor (built once, on first use)."""
    settings = get_settings()
    return ChunkProcessor(
        engine=create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s),
        store=ImageStore(settings.job_store),
        models=job_client(settings),
        limits=ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        policy=settings_policy(settings),
    )


# A shared task: registered with the worker's app (services/jobs/celery_app.py), which includes this module.
@shared_task(bind=True, name=TASK_NAME, max_retries=None)
def process_chunk(self: Any, job_id: str, indices: list[int], attempt: int = 0) -> None:
    """Answer the pending items ``indices`` of job ``job_id`` (``attempt``: transient retries so far)."""
    work = processor()
    try:
        delay = work.process(job_id, indices, attempt=attempt)
    except OperationalError as exc:
        # The database is away: nothing was answered, so try again, as long as it takes (accepted work is kept).
        policy = work.policy
        raise self.retry(
            exc=exc, countdown=backoff_s(self.request.retries, base_s=policy.base_s, max_s=policy.max_s)
        ) from exc
    if delay is not None:
        raise self.retry(kwargs={"attempt": attempt + 1}, countdown=delay)


@lru_cache(maxsize=1)
def drift_monitor() -> DriftMonitor:
    """This process's drift monitor (built once, on first use)."""
    settings = get_settings()
    engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    return DriftMonitor(engine, DriftPolicy.from_settings(settings))


@shared_task(name=DRIFT_TASK_NAME)
def check_drift() -> int:
    """The periodic drift check: every model's latest requests against its reference, each result stored."""
    return len(drift_monitor().check_all())
