"""Data-layer functions for batch jobs (keyword-only; the caller owns the session and commits).

Every write that finishes an item is conditional on the item still being ``pending`` and carries
its inference-log row in the same transaction, so a chunk run twice (a redelivered message, a
retry racing a slow worker) changes nothing the second time: one result and one log row per
``(job_id, item_index)``. Transactions that write start with their UPDATE, so SQLite takes its
write lock first instead of failing to upgrade a read lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, update
from sqlmodel import Session, col, select

from kernel.db.tables import (
    ACTIVE_JOB_STATUSES,
    BatchJob,
    BatchJobItem,
    InferenceLogCreate,
    ItemStatus,
    JobStatus,
    utcnow,
)
from services.db.logs import insert_inference_logs


@dataclass(frozen=True)
class ItemResult:
    """The final answer for one item: a result (200) or a problem body."""

    item_index: int
    http_status: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    log: InferenceLogCreate | None = None

    @property
    def status(self) -> str:
        return ItemStatus.SUCCEEDED.value if self.http_status < 400 else ItemStatus.FAILED.value


@dataclass
class JobProgress:
    """A job, how many of its items are in each state, and one page of its items."""

    job: BatchJob
    counts: dict[str, int]
    items: list[BatchJobItem] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if status != ItemStatus.PENDING.value)


def start_job(*, session: Session, job_id: str) -> BatchJob | None:
    """Mark a queued job running; the job when it is still active, else None (gone, finished or cancelled)."""
    session.connection().execute(
        update(BatchJob)
        .where(col(BatchJob.id) == job_id, col(BatchJob.status) == JobStatus.QUEUED.value)
        .values(status=JobStatus.RUNNING.value, started_at=utcnow())
    )
    job = session.get(BatchJob, job_id)
    return job if job is not None and job.status in ACTIVE_JOB_STATUSES else None


def pending_items(*, session: Session, job_id: str, indices: Sequence[int]) -> list[BatchJobItem]:
    """The items among ``indices`` that have no answer yet, in index order."""
    query = select(BatchJobItem).where(
        col(BatchJobItem.job_id) == job_id,
        col(BatchJobItem.item_index).in_(list(indices)),
        col(BatchJobItem.status) == ItemStatus.PENDING.value,
    )
    return list(session.exec(query.order_by(col(BatchJobItem.item_index))))


def add_attempts(*, session: Session, job_id: str, indices: Sequence[int], delta: int) -> None:
    """Count a worker starting (``delta=1``) or cleanly leaving (``delta=-1``) pending items.

    Either is activity: ``updated_at`` moves, so housekeeping never takes a job being worked for stalled.
    """
    session.connection().execute(
        update(BatchJobItem)
        .where(
            col(BatchJobItem.job_id) == job_id,
            col(BatchJobItem.item_index).in_(list(indices)),
            col(BatchJobItem.status) == ItemStatus.PENDING.value,
        )
        .values(attempts=col(BatchJobItem.attempts) + delta, updated_at=utcnow())
    )


def stalled_jobs(*, session: Session, before: datetime) -> list[str]:
    """Active jobs none of whose items has changed since ``before`` (no answer, no worker starting a chunk)."""
    query = (
        select(BatchJobItem.job_id)
        .join(BatchJob, col(BatchJob.id) == col(BatchJobItem.job_id))
        .where(col(BatchJob.status).in_(ACTIVE_JOB_STATUSES))
        .group_by(col(BatchJobItem.job_id))
        .having(func.max(col(BatchJobItem.updated_at)) < before)
    )
    return list(session.exec(query))


def claim_stalled(*, session: Session, job_id: str, before: datetime) -> list[int]:
    """Stamp a stalled job's pending items as touched now; their indices, or none if another sweep claimed them.

    The condition is re-checked on each row as it is updated, so of two workers sweeping at once only
    the first gets the indices (on PostgreSQL the second waits for the first's commit, then matches nothing).
    """
    claimed = session.connection().execute(
        update(BatchJobItem)
        .where(
            col(BatchJobItem.job_id) == job_id,
            col(BatchJobItem.status) == ItemStatus.PENDING.value,
            col(BatchJobItem.updated_at) < before,
        )
        .values(updated_at=utcnow())
        .returning(col(BatchJobItem.item_index))
    )
    return sorted(row[0] for row in claimed)


def record_results(*, session: Session, job_id: str, results: Sequence[ItemResult]) -> list[ItemResult]:
    """Answer pending items, log them, count them and finish the job when it is complete.

    Returns:
        The results this call wrote (items answered before, or cancelled, are left as they are).
    """
    now = utcnow()
    answered: list[ItemResult] = []
    for result in sorted(results, key=lambda r: r.item_index):  # one lock order for concurrent writers
        changed = session.connection().execute(
            update(BatchJobItem)
            .where(
                col(BatchJobItem.job_id) == job_id,
                col(BatchJobItem.item_index) == result.item_index,
                col(BatchJobItem.status) == ItemStatus.PENDING.value,
            )
            .values(
                status=result.status,
                http_status=result.http_status,
                result=result.result,
                error=result.error,
                updated_at=now,
            )
        )
        if changed.rowcount == 1:
            answered.append(result)
    if not answered:
        return answered
    insert_inference_logs(session=session, records=[r.log for r in answered if r.log is not None])
    succeeded = sum(1 for r in answered if r.status == ItemStatus.SUCCEEDED.value)
    session.connection().execute(
        update(BatchJob)
        .where(col(BatchJob.id) == job_id)
        .values(
            succeeded_count=col(BatchJob.succeeded_count) + succeeded,
            failed_count=col(BatchJob.failed_count) + len(answered) - succeeded,
        )
    )
    _finish_if_complete(session, job_id)
    return answered


def _finish_if_complete(session: Session, job_id: str) -> None:
    session.connection().execute(
        update(BatchJob)
        .where(
            col(BatchJob.id) == job_id,
            col(BatchJob.status).in_(ACTIVE_JOB_STATUSES),
            col(BatchJob.succeeded_count) + col(BatchJob.failed_count) >= col(BatchJob.item_count),
        )
        .values(
            status=case(
                (col(BatchJob.failed_count) == 0, JobStatus.SUCCEEDED.value),
                (col(BatchJob.succeeded_count) == 0, JobStatus.FAILED.value),
                else_=JobStatus.PARTIAL.value,
            ),
            finished_at=utcnow(),
        )
    )


def cancel_job(*, session: Session, job_id: str) -> bool:
    """Cancel an active job and its pending items; False when there was nothing to cancel.

    Items first, then the job (the order in which :func:`record_results` locks them), so a cancel
    racing a worker's write cannot deadlock on PostgreSQL.
    """
    active = (
        select(BatchJob.id).where(col(BatchJob.id) == job_id, col(BatchJob.status).in_(ACTIVE_JOB_STATUSES)).exists()
    )
    now = utcnow()
    session.connection().execute(
        update(BatchJobItem)
        .where(col(BatchJobItem.job_id) == job_id, col(BatchJobItem.status) == ItemStatus.PENDING.value, active)
        .values(status=ItemStatus.CANCELLED.value, updated_at=now)
    )
    changed = session.connection().execute(
        update(BatchJob)
        .where(col(BatchJob.id) == job_id, col(BatchJob.status).in_(ACTIVE_JOB_STATUSES))
        .values(status=JobStatus.CANCELLED.value, finished_at=now)
    )
    return bool(changed.rowcount)


def job_progress(*, session: Session, job_id: str, offset: int = 0, limit: int = 100) -> JobProgress | None:
    """A job, its item counts by status and the items ``offset .. offset + limit`` in index order; None if unknown."""
    job = session.get(BatchJob, job_id)
    if job is None:
        return None
    grouped = session.exec(
        select(BatchJobItem.status, func.count())
        .where(col(BatchJobItem.job_id) == job_id)
        .group_by(col(BatchJobItem.status))
    )
    counts = {status.value: 0 for status in ItemStatus}
    counts.update({status: int(n) for status, n in grouped})
    items: list[BatchJobItem] = []
    if limit > 0:
        query = select(BatchJobItem).where(col(BatchJobItem.job_id) == job_id)
        items = list(session.exec(query.order_by(col(BatchJobItem.item_index)).offset(offset).limit(limit)))
    return JobProgress(job=job, counts=counts, items=items)
