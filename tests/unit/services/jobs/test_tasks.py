"""The Celery task around ChunkProcessor: retries for transient failures and for a database that is away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Retry
from sqlalchemy.exc import OperationalError

from services.config import ServingSettings, get_settings
from services.jobs import tasks
from services.jobs.celery_app import app
from services.jobs.celery_factory import DRIFT_TASK_NAME, beat_schedule
from services.jobs.processing import RetryPolicy
from services.models.catalogue import MODEL_NAMES


class FakeProcessor:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.policy = RetryPolicy(base_s=1.0, max_s=4.0)
        self.calls: list[tuple[str, list[int], int]] = []

    def process(self, job_id: str, indices: list[int], *, attempt: int = 0) -> float | None:
        self.calls.append((job_id, indices, attempt))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the task asked Celery to retry with (the task runs in this process, not in a worker)."""
    asked: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Retry:
        asked.append(kwargs)
        return Retry("retry", when=kwargs.get("countdown"))

    monkeypatch.setattr(tasks.process_chunk, "retry", retry)
    return asked


def run_with(monkeypatch: pytest.MonkeyPatch, processor: FakeProcessor, **kwargs: Any) -> None:
    monkeypatch.setattr(tasks, "processor", lambda: processor)
    tasks.process_chunk.run("j1", [0, 1], **kwargs)


def test_a_finished_chunk_is_not_retried(monkeypatch: pytest.MonkeyPatch, retries: list[dict[str, Any]]) -> None:
    processor = FakeProcessor(None)
    run_with(monkeypatch, processor)
    assert processor.calls == [("j1", [0, 1], 0)] and retries == []


def test_a_transient_failure_is_retried_with_the_next_attempt(
    monkeypatch: pytest.MonkeyPatch, retries: list[dict[str, Any]]
) -> None:
    with pytest.raises(Retry):
        run_with(monkeypatch, FakeProcessor(2.0), attempt=1)
    assert retries == [{"kwargs": {"attempt": 2}, "countdown": 2.0}]


def test_a_database_outage_is_retried_without_counting_an_attempt(
    monkeypatch: pytest.MonkeyPatch, retries: list[dict[str, Any]]
) -> None:
    error = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with pytest.raises(Retry):
        run_with(monkeypatch, FakeProcessor(error))
    assert retries[0]["exc"] is error and 0.5 <= retries[0]["countdown"] <= 1.0


def test_the_task_is_acknowledged_late_and_rejected_on_worker_loss() -> None:
    assert tasks.process_chunk.name == "cv.jobs.process_chunk"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_ignore_result


def test_the_processor_is_built_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from services.config import get_settings

    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    tasks.processor.cache_clear()
    try:
        built = tasks.processor()
        assert built is tasks.processor() and built.store.root == tmp_path / "jobs"
        assert built.policy.max_retries == get_settings().jobs_max_retries
        built.engine.dispose()
    finally:
        tasks.processor.cache_clear()
        get_settings.cache_clear()


def test_redis_looks_for_expired_deliveries_well_within_the_timeout() -> None:
    from services.config import ServingSettings
    from services.jobs.celery_factory import transport_options

    def options(**values: Any) -> dict[str, Any]:
        return transport_options(ServingSettings(_env_file=None, **values))  # type: ignore[call-arg]

    assert options(jobs_broker_url="redis://r:6379/1", jobs_visibility_timeout_s=300) == {
        "visibility_timeout": 300,
        "unacked_restore_interval": 10.0,
        "unacked_restore_throttle": 1,
    }
    assert options(jobs_broker_url="redis://r:6379/1", jobs_visibility_timeout_s=2)["unacked_restore_interval"] == 1.0
    assert options()["polling_interval"] == 0.5 and "unacked_restore_interval" not in options()


def test_beat_sends_the_drift_check_every_interval_to_the_jobs_queue() -> None:
    settings = ServingSettings(_env_file=None, drift_interval_s=60, jobs_queue="q")  # type: ignore[call-arg]
    assert beat_schedule(settings) == {
        "drift-check": {"task": DRIFT_TASK_NAME, "schedule": 60, "options": {"queue": "q", "expires": 60}}
    }
    assert beat_schedule(settings.model_copy(update={"drift_enabled": False})) == {}
    assert app.conf.beat_schedule == beat_schedule(get_settings())
    assert DRIFT_TASK_NAME in app.tasks


def test_the_drift_task_checks_every_model_and_stores_the_results(data_dir: Path) -> None:
    from kernel.db import migrate

    tasks.drift_monitor.cache_clear()
    try:
        monitor = tasks.drift_monitor()
        migrate.upgrade(monitor.engine)
        assert tasks.check_drift.run() == len(MODEL_NAMES)  # nothing logged: insufficient_data, stored all the same
        assert {c.verdict for c in monitor.latest().values()} == {"insufficient_data"}
        assert tasks.drift_monitor() is monitor
    finally:
        tasks.drift_monitor.cache_clear()
