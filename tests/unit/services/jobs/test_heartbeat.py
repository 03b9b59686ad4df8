"""Worker heartbeats in the job database, and what the api's health makes of them."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.db.tables import BatchJob, JobStatus, JobWorker, utcnow
from services.config import ServingSettings
from services.jobs import alive
from services.jobs.heartbeat import Heartbeat, backlog, beat, forget, is_alive, workers_health
from services.jobs.queue import JobQueue
from services.jobs.store import ImageStore
from tests.waiting import wait_for


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


def _failed_beats(caplog: pytest.LogCaptureFixture) -> int:
    return sum(record.getMessage() == "job-worker-heartbeat failed" for record in list(caplog.records))


def _heartbeat_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "job-worker-heartbeat"]


def _rows_or_none(engine: Engine) -> dict[str, JobWorker] | None:
    try:
        return _rows(engine)
    except OperationalError:
        return None


def test_a_heartbeat_survives_a_missing_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beats go on while the database is away (each failure logged, nothing escapes) and land once it is back."""
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    caplog.set_level(logging.WARNING, logger="services.jobs.periodic")
    database = tmp_path / "db" / "cv.sqlite3"  # its folder is not there yet: SQLite cannot open the file
    # A plain engine: create_db_engine would make the folder and so bring the database.
    away = create_engine(f"sqlite:///{database}", connect_args={"check_same_thread": False})
    heartbeat = Heartbeat(away, hostname="t@a", queue="q", interval_s=0.01).start()
    try:
        wait_for(lambda: _failed_beats(caplog) >= 3, timeout_s=5, what="three failed beats, each logged")
        assert [thread.is_alive() for thread in _heartbeat_threads()] == [True]
        assert _rows_or_none(away) is None  # still away: nothing could be written

        back = create_db_engine(f"sqlite:///{database}")  # the database comes (folder, file, tables)
        migrate.upgrade(back)
        wait_for(lambda: "t@a" in _rows(back), timeout_s=5, what="a beat written once the database is back")
        first = _rows(back)["t@a"].seen_at
        wait_for(lambda: _rows(back)["t@a"].seen_at > first, timeout_s=5, what="the next beat")
    finally:
        heartbeat.stop()
    assert _rows(back) == {}  # a clean stop still forgets the worker
    assert escaped == []
    away.dispose()
    back.dispose()


def test_stopping_a_heartbeat_without_its_database_logs_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    broken = create_engine("sqlite:////nonexistent-dir/x.sqlite3")
    heartbeat = Heartbeat(broken, hostname="t@a", queue="q", interval_s=0.01).start()
    heartbeat.stop()  # forget() fails: logged, and the worker's shutdown goes on
    assert "could not remove the worker's heartbeat row" in caplog.text
    assert _heartbeat_threads() == []


def test_job_queue_health_reports_an_unreachable_database(tmp_path: object) -> None:
    queue = JobQueue(
        engine=create_engine("sqlite:////nonexistent-dir/x.sqlite3"),
        store=ImageStore(Path(str(tmp_path))),
        dispatcher=None,  # type: ignore[arg-type]
        chunk_size=8,
    )
    assert queue.health()["status"] == "degraded"


def _queue(engine: Engine, tmp_path: Path) -> JobQueue:
    return JobQueue(engine=engine, store=ImageStore(tmp_path), dispatcher=None, chunk_size=8)  # type: ignore[arg-type]


def test_backlog_counts_live_workers_active_jobs_and_the_oldest_ones_age(engine: Engine) -> None:
    assert backlog(engine, interval_s=10) == {"workers": 0.0, "active_jobs": 0.0, "oldest_active_age_s": 0.0}
    with Session(engine) as session:
        session.add(
            BatchJob(task="classify", status=JobStatus.QUEUED.value, created_at=utcnow() - timedelta(seconds=90))
        )
        session.add(
            BatchJob(task="classify", status=JobStatus.RUNNING.value, created_at=utcnow() - timedelta(seconds=5))
        )
        old_done = utcnow() - timedelta(hours=5)  # finished jobs are no backlog, however old
        session.add(BatchJob(task="classify", status=JobStatus.SUCCEEDED.value, created_at=old_done))
        session.commit()
    beat(engine, hostname="w@a", queue="q")
    numbers = backlog(engine, interval_s=10)
    assert numbers["workers"] == 1 and numbers["active_jobs"] == 2
    assert 90 <= numbers["oldest_active_age_s"] < 120


def test_record_metrics_sets_the_job_gauges(engine: Engine, tmp_path: Path) -> None:
    _job(engine, JobStatus.QUEUED)
    _queue(engine, tmp_path).record_metrics()
    assert REGISTRY.get_sample_value("cv_job_workers_live") == 0
    assert REGISTRY.get_sample_value("cv_jobs_active") == 1
    assert 0 <= (REGISTRY.get_sample_value("cv_job_oldest_active_age_seconds") or -1) < 60


def test_record_metrics_leaves_the_gauges_when_the_database_is_unreachable(tmp_path: Path) -> None:
    broken = create_engine("sqlite:////nonexistent-dir/x.sqlite3")
    before = REGISTRY.get_sample_value("cv_jobs_active")
    _queue(broken, tmp_path).record_metrics()  # logged, nothing raised: the scrape still answers
    assert REGISTRY.get_sample_value("cv_jobs_active") == before


def test_a_worker_is_alive_only_while_its_own_row_is_fresh(engine: Engine) -> None:
    assert not is_alive(engine, hostname="cv-jobs@a", interval_s=10)
    beat(engine, hostname="cv-jobs@b", queue="q")  # another host's worker says nothing about this one
    assert not is_alive(engine, hostname="cv-jobs@a", interval_s=10)
    with Session(engine) as session:
        session.add(JobWorker(hostname="cv-jobs@a", queue="q", seen_at=utcnow() - timedelta(seconds=40)))
        session.commit()
    assert not is_alive(engine, hostname="cv-jobs@a", interval_s=10)
    beat(engine, hostname="cv-jobs@a", queue="q")
    assert is_alive(engine, hostname="cv-jobs@a", interval_s=10)


def test_the_worker_health_check_reads_this_hosts_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    monkeypatch.setattr(alive.socket, "gethostname", lambda: "box")
    settings = ServingSettings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    monkeypatch.setattr(alive, "get_settings", lambda: settings)
    assert alive.main(["--name", "cv-jobs"]) == 1
    assert "no recent heartbeat from cv-jobs@box" in capsys.readouterr().err
    beat(engine, hostname="cv-jobs@box", queue="cv-jobs")
    assert alive.main(["--name", "cv-jobs"]) == 0
    engine.dispose()


def test_the_worker_health_check_fails_without_its_database(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServingSettings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:9/none")  # type: ignore[call-arg]
    monkeypatch.setattr(alive, "get_settings", lambda: settings)
    assert alive.main([]) == 1
