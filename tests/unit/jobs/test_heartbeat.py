"""Worker heartbeats in the job database, and what the api's health makes of them."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import Engine, create_engine
from sqlmodel import Session, select

from kernel.db.tables import BatchJob, JobStatus, JobWorker, utcnow
from services.jobs.heartbeat import Heartbeat, beat, forget, workers_health
from services.jobs.queue import JobQueue
from services.jobs.store import ImageStore


def _rows(engine: Engine) -> dict[str, JobWorker]:
    with Session(engine) as session:
        return {row.hostname: row for row in session.exec(select(JobWorker)).all()}


def _job(engine: Engine, status: JobStatus) -> None:
    with Session(engine) as session:
        session.add(BatchJob(task="classify", status=status.value))
        session.commit()


def test_a_beat_inserts_then_refreshes_and_forget_removes(engine: Engine) -> None:
    beat(engine, hostname="w@a", queue="cv-jobs")
    first = _rows(engine)["w@a"].seen_at
    time.sleep(0.01)
    beat(engine, hostname="w@a", queue="cv-jobs")
    rows = _rows(engine)
    assert list(rows) == ["w@a"] and rows["w@a"].seen_at > first and rows["w@a"].queue == "cv-jobs"
    forget(engine, hostname="w@a")
    assert _rows(engine) == {}


def test_waiting_jobs_without_a_live_worker_are_degraded(engine: Engine) -> None:
    assert workers_health(engine, interval_s=10) == {"status": "ok", "workers": 0, "active_jobs": 0}
    _job(engine, JobStatus.QUEUED)
    _job(engine, JobStatus.SUCCEEDED)  # finished jobs need nobody
    assert workers_health(engine, interval_s=10) == {"status": "degraded", "workers": 0, "active_jobs": 1}
    with Session(engine) as session:  # a worker last heard of 40 s ago, 3 beats of 10 s: dead
        session.add(JobWorker(hostname="old@a", queue="q", seen_at=utcnow() - timedelta(seconds=40)))
        session.commit()
    assert workers_health(engine, interval_s=10)["workers"] == 0
    beat(engine, hostname="new@a", queue="q")
    assert workers_health(engine, interval_s=10) == {"status": "ok", "workers": 1, "active_jobs": 1}


def test_the_heartbeat_thread_beats_until_stopped_then_leaves(engine: Engine) -> None:
    heartbeat = Heartbeat(engine, hostname="t@a", queue="q", interval_s=0.02).start()
    try:
        deadline = time.monotonic() + 5
        while "t@a" not in _rows(engine) and time.monotonic() < deadline:
            time.sleep(0.01)
        first = _rows(engine)["t@a"].seen_at
        time.sleep(0.1)
        assert _rows(engine)["t@a"].seen_at > first
    finally:
        heartbeat.stop()
    assert _rows(engine) == {}


def test_a_heartbeat_survives_a_missing_database(tmp_path: object) -> None:
    broken = create_engine("sqlite:////nonexistent-dir/x.sqlite3")
    heartbeat = Heartbeat(broken, hostname="t@a", queue="q", interval_s=0.01).start()
    time.sleep(0.05)
    heartbeat.stop()  # no exception: logged, and the worker goes on


def test_job_queue_health_reports_an_unreachable_database(tmp_path: object) -> None:
    from pathlib import Path

    queue = JobQueue(
        engine=create_engine("sqlite:////nonexistent-dir/x.sqlite3"),
        store=ImageStore(Path(str(tmp_path))),
        dispatcher=None,  # type: ignore[arg-type]
        chunk_size=8,
    )
    assert queue.health()["status"] == "degraded"
