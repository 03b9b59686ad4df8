"""Who works the batch-job queue: each worker rewrites its row in ``job_worker`` every few seconds.

The api's health reads the rows (:func:`workers_health`): accepted jobs with no live worker are
work that will not move, and health says ``degraded`` until a worker comes. The database is the
one store both modes have (SQLite locally, PostgreSQL in production); Celery's own remote control
is off (the local broker has no fanout exchange) and a broadcast ping would be too slow for a health
check Traefik calls every second.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, delete, select

from kernel.db.tables import ACTIVE_JOB_STATUSES, BatchJob, JobWorker, utcnow
from services.jobs.periodic import Periodic

log = logging.getLogger(__name__)
# A worker not heard from for this many intervals is taken for dead.
STALE_AFTER_BEATS = 3


def beat(engine: Engine, *, hostname: str, queue: str) -> None:
    """Record that ``hostname`` is alive now (insert or update its row)."""
    with Session(engine) as session:
        row = session.get(JobWorker, hostname) or JobWorker(hostname=hostname, queue=queue)
        row.seen_at = utcnow()
        session.add(row)
        session.commit()


def forget(engine: Engine, *, hostname: str) -> None:
    """Remove ``hostname``'s row (a clean shutdown)."""
    with Session(engine) as session:
        session.exec(delete(JobWorker).where(col(JobWorker.hostname) == hostname))
        session.commit()


class Heartbeat:
    """Beats every ``interval_s`` on a thread of its own until :meth:`stop` (which also forgets the worker)."""

    def __init__(self, engine: Engine, *, hostname: str, queue: str, interval_s: float) -> None:
        self.engine, self.hostname = engine, hostname  # stop() forgets this worker
        self._periodic = Periodic(
            "job-worker-heartbeat", lambda: beat(engine, hostname=hostname, queue=queue), interval_s=interval_s
        )

    def start(self) -> Heartbeat:
        self._periodic.start()
        return self

    def stop(self) -> None:
        self._periodic.stop()
        try:
            forget(self.engine, hostname=self.hostname)
        except Exception:
            log.warning("could not remove the worker's heartbeat row", exc_info=True)


def _live_workers(interval_s: float) -> Any:
    """Counts the workers that beat within the last ``STALE_AFTER_BEATS`` intervals (compared in SQL: SQLite
    keeps no time zone)."""
    since = utcnow() - timedelta(seconds=interval_s * STALE_AFTER_BEATS)
    return select(func.count()).select_from(JobWorker).where(col(JobWorker.seen_at) >= since)


def workers_health(engine: Engine, *, interval_s: float) -> dict[str, Any]:
    """Live workers and active jobs; ``degraded`` when jobs wait and no worker is alive."""
    with Session(engine) as session:
        workers = session.exec(_live_workers(interval_s)).one()
        jobs = session.exec(
            select(func.count()).select_from(BatchJob).where(col(BatchJob.status).in_(ACTIVE_JOB_STATUSES))
        ).one()
    status = "degraded" if jobs and not workers else "ok"
    return {"status": status, "workers": int(workers), "active_jobs": int(jobs)}


def backlog(engine: Engine, *, interval_s: float) -> dict[str, float]:
    """Live workers, active jobs and the age in seconds of the oldest active job (0 when none), for the metrics."""
    with Session(engine) as session:
        workers = session.exec(_live_workers(interval_s)).one()
        jobs, oldest = session.exec(
            select(func.count(), func.min(BatchJob.created_at)).where(col(BatchJob.status).in_(ACTIVE_JOB_STATUSES))
        ).one()
    age = max(0.0, (utcnow() - _aware(oldest)).total_seconds()) if oldest is not None else 0.0
    return {"workers": float(workers), "active_jobs": float(jobs), "oldest_active_age_s": age}


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; they are UTC (kernel/db/tables.py writes them so)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_alive(engine: Engine, *, hostname: str, interval_s: float) -> bool:
    """Whether worker ``hostname`` beat within the last ``STALE_AFTER_BEATS`` intervals."""
    with Session(engine) as session:
        return bool(session.exec(_live_workers(interval_s).where(col(JobWorker.hostname) == hostname)).one())
