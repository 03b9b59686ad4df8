"""Housekeeping of batch jobs: stalled jobs sent again, orphan image folders, cut-off uploads, expired job rows."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from kernel.db.tables import (
    BatchJob,
    BatchJobItem,
    InferenceLog,
    InferenceLogCreate,
    JobStatus,
    new_id,
    utcnow,
)
from services.db.jobs import ItemResult, add_attempts, record_results
from services.db.logs import insert_inference_logs
from services.jobs import housekeeping
from services.jobs.housekeeping import Policy, sweep
from services.jobs.periodic import Periodic
from services.jobs.store import ImageStore
from tests.unit.services.jobs.conftest import MakeJob, png

HOUR = 3600.0


def _policy(retention_days: float = 0, stalled_after_s: float = 600.0) -> Policy:
    return Policy(retention_days=retention_days, orphan_grace_s=HOUR, stalled_after_s=stalled_after_s, chunk_size=2)


def _age(path: Path, seconds: float, now: datetime) -> None:
    """Make ``path`` look ``seconds`` old at ``now``."""
    then = now.timestamp() - seconds
    os.utime(path, (then, then))


def _orphan(store: ImageStore, age_s: float, now: datetime) -> str:
    """Images stored for a job whose row was never committed (the api died in between)."""
    job_id = new_id()
    store.put(png(1), job_id=job_id)
    _age(store.root / "jobs" / job_id, age_s, now)
    return job_id


def _set(engine: Engine, job_id: str, status: JobStatus, ended: datetime | None) -> None:
    with Session(engine) as session:
        job = session.get(BatchJob, job_id)
        assert job is not None
        job.status, job.finished_at = status.value, ended
        session.add(job)
        session.commit()


def _jobs(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(BatchJob.id)).all())


def _items(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(BatchJobItem)).one())


class Broker:
    """Records what is sent; ``queued`` is how many messages wait in the queue."""

    def __init__(self, queued: int = 0) -> None:
        self.queued = queued
        self.sent: list[tuple[str, list[list[int]], str | None]] = []

    def send(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None:
        self.sent.append((job_id, chunks, request_id))

    def waiting(self) -> int:
        return self.queued


def _quiet_since(engine: Engine, job_id: str, when: datetime) -> None:
    """Nothing has happened to the job's items since ``when``."""
    with Session(engine) as session:
        session.connection().execute(
            update(BatchJobItem).where(col(BatchJobItem.job_id) == job_id).values(updated_at=when)
        )
        session.commit()


def _answer(engine: Engine, job_id: str, index: int) -> None:
    with Session(engine) as session:
        record_results(session=session, job_id=job_id, results=[ItemResult(index, 200, result={"ok": True})])
        session.commit()


def test_a_stalled_job_is_sent_again_once_and_only_its_pending_items(
    engine: Engine, store: ImageStore, make_job: MakeJob
) -> None:
    now = utcnow()
    stalled = make_job([png(i) for i in range(5)], request_id="req-lost")
    _answer(engine, stalled, 1)  # answered before the messages were lost
    _quiet_since(engine, stalled, now - timedelta(hours=2))
    busy = make_job([png(9)])  # a worker touched it a minute ago
    _quiet_since(engine, busy, now - timedelta(minutes=1))
    ended = make_job([png(8)])
    _set(engine, ended, JobStatus.SUCCEEDED, now - timedelta(hours=3))
    _quiet_since(engine, ended, now - timedelta(hours=3))
    broker = Broker()

    report = sweep(engine, store, _policy(), dispatcher=broker, now=now)

    assert report.redispatched_jobs == [stalled]
    assert broker.sent == [(stalled, [[0, 2], [3, 4]], "req-lost")]  # chunks of 2, item 1 left out
    # Claimed: the items count as touched now, so the next sweep (another worker's) sends nothing.
    again = Broker()
    assert sweep(engine, store, _policy(), dispatcher=again).redispatched_jobs == []
    assert again.sent == []


def test_nothing_is_sent_again_while_messages_wait_in_the_queue(
    engine: Engine, store: ImageStore, make_job: MakeJob
) -> None:
    now = utcnow()
    job = make_job([png(1)])
    _quiet_since(engine, job, now - timedelta(hours=2))
    busy_queue = Broker(queued=3)  # a backlog: its messages may be this job's, waiting their turn
    assert sweep(engine, store, _policy(), dispatcher=busy_queue, now=now).redispatched_jobs == []
    assert busy_queue.sent == []
    dry = Broker()
    report = sweep(engine, store, _policy(), dispatcher=dry, now=now, dry_run=True)
    assert report.redispatched_jobs == [job] and dry.sent == []


def test_a_broker_outage_skips_the_stalled_jobs_and_cleans_up_the_rest(
    engine: Engine, store: ImageStore, make_job: MakeJob
) -> None:
    class Down(Broker):
        def waiting(self) -> int:
            raise ConnectionError("broker unreachable")

    now = utcnow()
    orphan = _orphan(store, 2 * HOUR, now)
    job = make_job([png(1)])
    _quiet_since(engine, job, now - timedelta(hours=2))
    report = sweep(engine, store, _policy(), dispatcher=Down(), now=now)
    assert report.redispatched_jobs == [] and report.orphan_folders == [orphan]


def test_a_worker_starting_a_chunk_counts_as_activity(engine: Engine, store: ImageStore, make_job: MakeJob) -> None:
    now = utcnow()
    job = make_job([png(1), png(2)])
    _quiet_since(engine, job, now - timedelta(hours=2))
    with Session(engine) as session:
        add_attempts(session=session, job_id=job, indices=[0], delta=1)
        session.commit()
    broker = Broker()
    assert sweep(engine, store, _policy(), dispatcher=broker, now=now).redispatched_jobs == []


def test_orphan_folders_go_after_the_grace_and_live_jobs_keep_theirs(
    engine: Engine, store: ImageStore, make_job: MakeJob
) -> None:
    now = utcnow()
    old_orphan, young_orphan = _orphan(store, 2 * HOUR, now), _orphan(store, 10.0, now)
    queued = make_job([png(2)])  # waiting for a worker: its images are needed however old
    ended = make_job([png(3)])  # succeeded, but the worker died before it released the images
    _set(engine, ended, JobStatus.SUCCEEDED, now)
    for job_id in (queued, ended):
        _age(store.root / "jobs" / job_id, 2 * HOUR, now)

    report = sweep(engine, store, _policy(0), now=now)

    assert sorted(report.orphan_folders) == sorted([old_orphan, ended])
    assert set(store.job_folders()) == {young_orphan, queued}
    assert report.expired_jobs == [] and _jobs(engine) == {queued, ended}  # retention 0: rows kept for ever


def test_cut_off_uploads_go_after_the_grace(store: ImageStore, engine: Engine) -> None:
    now = utcnow()
    store.root.mkdir(parents=True)
    old, fresh = store.root / ".incoming-old", store.root / ".incoming-fresh"
    old.write_bytes(b"half an image")
    fresh.write_bytes(b"being written")
    _age(old, 2 * HOUR, now)
    report = sweep(engine, store, _policy(0), now=now)
    assert report.incoming_files == 1 and not old.exists() and fresh.exists()


def test_jobs_that_ended_before_the_retention_go_with_their_items_and_images(
    engine: Engine, store: ImageStore, make_job: MakeJob
) -> None:
    now = utcnow()
    expired = make_job([png(1), png(2)])
    _set(engine, expired, JobStatus.PARTIAL, now - timedelta(days=31))
    cancelled = make_job([png(3)])  # its images were released at cancel time already
    _set(engine, cancelled, JobStatus.CANCELLED, now - timedelta(days=40))
    store.release(cancelled)
    recent = make_job([png(4)])
    _set(engine, recent, JobStatus.SUCCEEDED, now - timedelta(days=29))
    old_but_running = make_job([png(5)])
    _set(engine, old_but_running, JobStatus.RUNNING, None)
    with Session(engine) as session:  # created long ago, still running: never expires
        job = session.get(BatchJob, old_but_running)
        assert job is not None
        job.created_at = now - timedelta(days=90)
        session.add(job)
        session.commit()
    # The inference-log row of an expired job's item is the audit trail: it stays.
    with Session(engine) as session:
        record = InferenceLogCreate(route="/api/v1/batch", job_id=expired, status=200, latency_ms=1.0)
        insert_inference_logs(session=session, records=[record])
        session.commit()

    report = sweep(engine, store, _policy(30), now=now)

    assert sorted(report.expired_jobs) == sorted([expired, cancelled])
    assert _jobs(engine) == {recent, old_but_running}
    assert _items(engine) == 2  # one each
    assert expired not in store.job_folders() and {recent, old_but_running} <= set(store.job_folders())
    with Session(engine) as session:
        assert session.exec(select(InferenceLog.job_id)).all() == [expired]


def test_a_dry_run_lists_and_deletes_nothing(engine: Engine, store: ImageStore, make_job: MakeJob) -> None:
    now = utcnow()
    orphan = _orphan(store, 2 * HOUR, now)
    expired = make_job([png(1)])
    _set(engine, expired, JobStatus.FAILED, now - timedelta(days=60))
    report = sweep(engine, store, _policy(30), now=now, dry_run=True)
    assert report.orphan_folders == [orphan] and report.expired_jobs == [expired] and report.dry_run
    assert set(store.job_folders()) == {orphan, expired} and _jobs(engine) == {expired}


def test_more_jobs_than_one_statement_takes(engine: Engine, store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(housekeeping, "_BATCH", 7)
    now = utcnow()
    orphans = {_orphan(store, 2 * HOUR, now) for _ in range(20)}
    with Session(engine) as session:
        for _ in range(20):
            session.add(BatchJob(task="classify", status="succeeded", finished_at=now - timedelta(days=2)))
        session.commit()
    report = sweep(engine, store, _policy(1), now=now)
    assert set(report.orphan_folders) == orphans and len(report.expired_jobs) == 20
    assert store.job_folders() == {} and _jobs(engine) == set()


@pytest.mark.usefixtures("restore_services_logger")  # the command configures logging onto captured stdout
def test_the_command_sweeps_with_the_configured_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kernel.db import migrate
    from kernel.db.session import create_db_engine
    from services.config import get_settings

    monkeypatch.setenv("CV_JOBS_ORPHAN_GRACE_S", "60")
    settings = get_settings()
    migrate.upgrade(create_db_engine(settings.sqlalchemy_url))
    store = ImageStore(settings.job_store)
    orphan = _orphan(store, 120, utcnow())
    assert housekeeping.main(["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["orphan_folders"] == [orphan]
    assert orphan in store.job_folders()
    assert housekeeping.main([]) == 0
    assert json.loads(capsys.readouterr().out)["orphan_folders"] == [orphan]
    assert store.job_folders() == {}


def test_a_periodic_action_that_fails_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    done = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) >= 3:
            done.set()
        raise RuntimeError("database away")

    with caplog.at_level(logging.WARNING, logger="services.jobs.periodic"):
        periodic = Periodic("flaky-housekeeping", flaky, interval_s=0.01).start()
        assert done.wait(5)
        periodic.stop()
    assert len(calls) >= 3
    assert "flaky-housekeeping failed" in caplog.text
