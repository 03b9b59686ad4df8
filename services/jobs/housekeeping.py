"""Housekeeping of batch jobs: jobs whose messages were lost, and what the store and tables keep (ADR 0005).

Every job worker runs :func:`sweep` at start and every ``CV_JOBS_SWEEP_INTERVAL_S``; ``python -m
services.jobs.housekeeping`` runs it once (``--dry-run`` only lists). It does four things:

- **Stalled jobs are sent again.** A job is accepted when its rows are committed and its messages
  sent. If the broker then loses them (Redis restarted without persistence, a queue purged) or the api
  dies before sending them all, the job would wait for ever. A job is stalled when it is queued or
  running, none of its items has changed for ``stalled_after_s`` (twice the visibility timeout, so a
  dead worker's message has had time to come back) and no message waits in the queue (a long queue
  cannot tell lost messages from waiting ones; the sweep tries again once it has drained). Its
  pending items are sent again in chunks: processing is idempotent, so a message that was not lost
  after all only costs a no-op.
- Image folders no job will read again go once older than ``CV_JOBS_ORPHAN_GRACE_S``: the api died
  between storing a job's images and committing the job (no 202 was sent), or a worker died between
  recording the last answer and deleting them. The grace keeps an upload not yet committed safe.
- ``.incoming-*`` files of uploads cut off mid-write go after the same grace.
- Rows of jobs that ended more than ``CV_JOBS_RETENTION_DAYS`` ago go (0: kept for ever). Their
  inference-log rows stay; those are the audit trail.

Several workers may sweep at once: deletions are idempotent and a stalled job is claimed by one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, delete, select

from kernel.db.tables import ACTIVE_JOB_STATUSES, BatchJob, BatchJobItem, utcnow
from services.config import ServingSettings
from services.db import jobs as jobs_db
from services.jobs.queue import Dispatcher
from services.jobs.store import ImageStore
from services.metrics import JOB_HOUSEKEEPING
from services.sequences import batched

log = logging.getLogger(__name__)
_BATCH = 500  # ids per statement: far below every driver's parameter limit


@dataclass(frozen=True)
class Policy:
    """What a sweep keeps, and when it takes a job for stalled."""

    retention_days: float  # 0: keep ended jobs for ever
    orphan_grace_s: float
    stalled_after_s: float
    chunk_size: int

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> Policy:
        return cls(
            retention_days=settings.jobs_retention_days,
            orphan_grace_s=settings.jobs_orphan_grace_s,
            stalled_after_s=2 * settings.jobs_visibility_timeout_s,
            chunk_size=settings.jobs_chunk_size,
        )


@dataclass
class SweepReport:
    """What one sweep did (or, dry, would do)."""

    redispatched_jobs: list[str] = field(default_factory=list)
    orphan_folders: list[str] = field(default_factory=list)  # job ids
    incoming_files: int = 0
    expired_jobs: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def did_anything(self) -> bool:
        return bool(self.redispatched_jobs or self.orphan_folders or self.incoming_files or self.expired_jobs)


def sweep(
    engine: Engine,
    store: ImageStore,
    policy: Policy,
    *,
    dispatcher: Dispatcher | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> SweepReport:
    """Send stalled jobs again (given a dispatcher), delete expired jobs, orphan folders and cut-off uploads."""
    now = now or utcnow()
    report = SweepReport(dry_run=dry_run)
    if dispatcher is not None:
        try:
            report.redispatched_jobs = _redispatch_stalled(engine, dispatcher, policy, now=now, dry_run=dry_run)
        except Exception:  # a broker outage must not stop the clean-up below; the next sweep tries again
            log.warning("could not look for stalled jobs", exc_info=True)
    if policy.retention_days > 0:
        before = now - timedelta(days=policy.retention_days)
        report.expired_jobs = _expire_jobs(engine, store, before=before, dry_run=dry_run)
    cutoff = now.timestamp() - policy.orphan_grace_s
    old = {job_id for job_id, mtime in store.job_folders().items() if mtime < cutoff}
    live = _active(engine, sorted(old))
    report.orphan_folders = sorted(old - live)
    stale = store.incoming_before(cutoff)
    report.incoming_files = len(stale)
    if not dry_run:
        for job_id in report.orphan_folders:
            store.release(job_id)
        for path in stale:
            path.unlink(missing_ok=True)
        JOB_HOUSEKEEPING.labels("orphan_folder").inc(len(report.orphan_folders))
        JOB_HOUSEKEEPING.labels("incoming_file").inc(len(stale))
        JOB_HOUSEKEEPING.labels("expired_job").inc(len(report.expired_jobs))
        JOB_HOUSEKEEPING.labels("redispatched_job").inc(len(report.redispatched_jobs))
    if report.did_anything:
        log.info(
            "job housekeeping",
            extra={
                "dry_run": dry_run,
                "redispatched_jobs": len(report.redispatched_jobs),
                "orphan_folders": len(report.orphan_folders),
                "incoming_files": report.incoming_files,
                "expired_jobs": len(report.expired_jobs),
            },
        )
    return report


def _redispatch_stalled(
    engine: Engine, dispatcher: Dispatcher, policy: Policy, *, now: datetime, dry_run: bool
) -> list[str]:
    """Send the pending items of stalled jobs again; the jobs sent (or, dry, that would be)."""
    waiting = dispatcher.waiting()
    if waiting:
        return []  # lost messages cannot be told from messages still waiting their turn
    before = now - timedelta(seconds=policy.stalled_after_s)
    with Session(engine) as session:
        stalled = jobs_db.stalled_jobs(session=session, before=before)
    if dry_run:
        return stalled
    sent = []
    for job_id in stalled:
        with Session(engine) as session:
            indices = jobs_db.claim_stalled(session=session, job_id=job_id, before=before)
            request_id = session.exec(select(BatchJob.request_id).where(col(BatchJob.id) == job_id)).first()
            session.commit()
        if not indices:
            continue  # claimed by another worker's sweep, or it moved meanwhile
        # Should the send fail now, the claim only delays the job: it stalls again and the next sweep sends it.
        dispatcher.send(job_id, [list(chunk) for chunk in batched(indices, policy.chunk_size)], request_id)
        log.warning("stalled job sent again", extra={"job_id": job_id, "items": len(indices), "request_id": request_id})
        sent.append(job_id)
    return sent


def _active(engine: Engine, job_ids: Sequence[str]) -> set[str]:
    """Those of ``job_ids`` whose job is still queued or running (their images are still needed)."""
    active: set[str] = set()
    with Session(engine) as session:
        for batch in batched(job_ids, _BATCH):
            ids = col(BatchJob.id).in_(batch)
            active.update(session.exec(select(BatchJob.id).where(ids, col(BatchJob.status).in_(ACTIVE_JOB_STATUSES))))
    return active


def _expire_jobs(engine: Engine, store: ImageStore, *, before: datetime, dry_run: bool) -> list[str]:
    """Delete the jobs that ended before ``before``, their items and any images left; their ids."""
    ended_at = func.coalesce(col(BatchJob.finished_at), col(BatchJob.created_at))
    with Session(engine) as session:
        expired = list(
            session.exec(
                select(BatchJob.id).where(col(BatchJob.status).not_in(ACTIVE_JOB_STATUSES), ended_at < before)
            ).all()
        )
        if dry_run:
            return expired
        for batch in batched(expired, _BATCH):
            # Items first (the foreign key), then their jobs, one transaction per batch. An ended job never
            # becomes active again, so nothing can start between the select and the delete.
            session.exec(delete(BatchJobItem).where(col(BatchJobItem.job_id).in_(batch)))
            session.exec(delete(BatchJob).where(col(BatchJob.id).in_(batch)))
            session.commit()
    for job_id in expired:
        store.release(job_id)
    return expired


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.jobs.housekeeping [--dry-run]``: one sweep with the configured settings."""
    from kernel.db.session import create_db_engine
    from kernel.logging import configure_logging
    from services.config import get_settings
    from services.jobs.celery_factory import create_celery
    from services.jobs.queue import CeleryDispatcher

    parser = argparse.ArgumentParser(prog="python -m services.jobs.housekeeping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would be done; change nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    started = time.perf_counter()
    report = sweep(
        engine,
        ImageStore(settings.job_store),
        Policy.from_settings(settings),
        dispatcher=CeleryDispatcher(create_celery(settings), settings.jobs_queue),
        dry_run=args.dry_run,
    )
    print(json.dumps({**asdict(report), "seconds": round(time.perf_counter() - started, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
