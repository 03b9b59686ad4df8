"""Housekeeping of batch jobs: what the job store and the job tables keep, and for how long (ADR 0005).

Left alone, three things would grow for ever:

- image folders whose release never ran: the api died between storing a job's images and committing
  the job (no 202 was sent), or a worker died between recording a job's last answer and deleting them;
- ``.incoming-*`` files of uploads cut off mid-write;
- the rows of finished jobs (``batch_job``, ``batch_job_item``), kept ``CV_JOBS_RETENTION_DAYS`` days
  after the job ended (0: for ever). Their inference-log rows stay; those are the audit trail.

Every job worker runs :func:`sweep` every ``CV_JOBS_SWEEP_INTERVAL_S``; ``python -m
services.jobs.retention`` runs it once (``--dry-run`` only lists). A folder goes only when it is older
than ``CV_JOBS_ORPHAN_GRACE_S`` and its job is unknown or has ended, so the images of a job still being
uploaded, or waiting for a worker, are never touched. Several workers may sweep at once: every deletion
is idempotent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, delete, select

from services.db.tables import ACTIVE_JOB_STATUSES, BatchJob, BatchJobItem, utcnow
from services.jobs.store import ImageStore
from services.metrics import JOB_HOUSEKEEPING

log = logging.getLogger(__name__)
_BATCH = 500  # ids per statement: far below every driver's parameter limit


@dataclass
class SweepReport:
    """What one sweep deleted (or, dry, would delete)."""

    orphan_folders: list[str] = field(default_factory=list)  # job ids
    incoming_files: int = 0
    expired_jobs: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def deleted_anything(self) -> bool:
        return bool(self.orphan_folders or self.incoming_files or self.expired_jobs)


def sweep(
    engine: Engine,
    store: ImageStore,
    *,
    retention_days: float,
    grace_s: float,
    now: datetime | None = None,
    dry_run: bool = False,
) -> SweepReport:
    """Delete expired jobs, orphan image folders and cut-off uploads; what was (or would be) deleted."""
    now = now or utcnow()
    report = SweepReport(dry_run=dry_run)
    if retention_days > 0:
        report.expired_jobs = _expire_jobs(engine, store, before=now - timedelta(days=retention_days), dry_run=dry_run)
    cutoff = now.timestamp() - grace_s
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
    if report.deleted_anything:
        log.info(
            "job housekeeping",
            extra={
                "dry_run": dry_run,
                "orphan_folders": len(report.orphan_folders),
                "incoming_files": report.incoming_files,
                "expired_jobs": len(report.expired_jobs),
            },
        )
    return report


def _batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


def _active(engine: Engine, job_ids: Sequence[str]) -> set[str]:
    """Those of ``job_ids`` whose job is still queued or running (their images are still needed)."""
    active: set[str] = set()
    with Session(engine) as session:
        for batch in _batches(job_ids):
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
        for batch in _batches(expired):
            # Items first (the foreign key), then their jobs, one transaction per batch. An ended job never
            # becomes active again, so nothing can start between the select and the delete.
            session.exec(delete(BatchJobItem).where(col(BatchJobItem.job_id).in_(batch)))
            session.exec(delete(BatchJob).where(col(BatchJob.id).in_(batch)))
            session.commit()
    for job_id in expired:
        store.release(job_id)
    return expired


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.jobs.retention [--dry-run]``: one sweep with the configured settings."""
    from services.config import get_settings
    from services.db.session import create_db_engine
    from services.logging import configure_logging

    parser = argparse.ArgumentParser(prog="python -m services.jobs.retention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    started = time.perf_counter()
    report = sweep(
        engine,
        ImageStore(settings.job_store),
        retention_days=settings.jobs_retention_days,
        grace_s=settings.jobs_orphan_grace_s,
        dry_run=args.dry_run,
    )
    print(json.dumps({**asdict(report), "seconds": round(time.perf_counter() - started, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
