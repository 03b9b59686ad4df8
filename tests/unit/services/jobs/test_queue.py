"""JobQueue: jobs stored then sent in chunks, progress pages, cancel, and what happens when a part is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from kernel.db.tables import new_id
from kernel.errors import JobsUnavailable
from services.config import ServingSettings
from services.jobs.celery_factory import TASK_NAME, create_celery
from services.jobs.queue import CeleryDispatcher, JobQueue, StagedImage
from services.jobs.store import ImageStore
from tests.unit.fakes import sample
from tests.unit.services.jobs.conftest import png


class RecordingDispatcher:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, list[list[int]], str | None]] = []
        self.error = error

    def send(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((job_id, chunks, request_id))


def job_images(store: ImageStore, n: int) -> dict[str, Any]:
    """``n`` images stored for a new job id, as the route stores them: ``submit(**job_images(...))``."""
    job_id = new_id()
    images = []
    for i in range(n):
        key, sha = store.put(png(i), job_id=job_id)
        images.append(StagedImage(filename=f"{i}.png", content_type="image/png", key=key, sha256=sha))
    return {"images": images, "job_id": job_id}


def queue_with(engine: Engine, store: ImageStore, dispatcher: Any, chunk_size: int = 2) -> JobQueue:
    return JobQueue(engine=engine, store=store, dispatcher=dispatcher, chunk_size=chunk_size)


def test_submit_stores_the_job_then_sends_its_chunks(engine: Engine, store: ImageStore) -> None:
    dispatcher = RecordingDispatcher()
    before = sample("cv_jobs_submitted_total", {"task": "detect"})
    progress = queue_with(engine, store, dispatcher).submit(
        task="detect", params={"confidence": 0.5}, version="v1", **job_images(store, 5), request_id="r1"
    )
    job = progress.job
    assert (job.task, job.status, job.item_count, job.params, job.version) == (
        "detect",
        "queued",
        5,
        {"confidence": 0.5},
        "v1",
    )
    assert progress.counts["pending"] == 5 and progress.done == 0 and progress.items == []
    assert dispatcher.sent == [(job.id, [[0, 1], [2, 3], [4]], "r1")]
    assert sample("cv_jobs_submitted_total", {"task": "detect"}) == before + 1


def test_progress_pages_through_the_items(engine: Engine, store: ImageStore) -> None:
    queue = queue_with(engine, store, RecordingDispatcher())
    job_id = queue.submit(task="classify", params={}, version=None, **job_images(store, 5), request_id=None).job.id
    page = queue.progress(job_id, offset=3, limit=10)
    assert page is not None and [i.item_index for i in page.items] == [3, 4]
    assert page.items[0].filename == "3.png" and page.items[0].content_type == "image/png"
    assert queue.progress("missing") is None


def test_cancel_cancels_pending_items_once(engine: Engine, store: ImageStore) -> None:
    queue = queue_with(engine, store, RecordingDispatcher())
    job_id = queue.submit(task="classify", params={}, version=None, **job_images(store, 3), request_id=None).job.id
    progress, cancelled = queue.cancel(job_id)
    assert cancelled and progress is not None
    assert progress.job.status == "cancelled" and progress.counts["cancelled"] == 3 and progress.done == 3
    progress, cancelled = queue.cancel(job_id)
    assert not cancelled and progress is not None and progress.job.status == "cancelled"
    assert queue.cancel("missing") == (None, False)


def test_a_broker_that_is_down_withdraws_the_job(engine: Engine, store: ImageStore) -> None:
    queue = queue_with(engine, store, RecordingDispatcher(ConnectionRefusedError("no broker")))
    staged = job_images(store, 1)
    with pytest.raises(JobsUnavailable, match="broker"):
        queue.submit(task="classify", params={}, version=None, **staged, request_id=None)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT status FROM batch_job")).scalar_one() == "cancelled"
    assert not store.path(f"jobs/{staged['job_id']}").exists()  # its images go with it


def test_a_database_that_is_down_refuses_the_job(tmp_path: Path, store: ImageStore) -> None:
    dispatcher = RecordingDispatcher()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'not-migrated.sqlite3'}")  # no tables
    staged = job_images(store, 1)
    with pytest.raises(JobsUnavailable, match="database"):
        queue_with(engine, store, dispatcher).submit(
            task="classify", params={}, version=None, **staged, request_id=None
        )
    assert dispatcher.sent == []
    assert not store.path(f"jobs/{staged['job_id']}").exists()


def test_the_celery_dispatcher_sends_one_message_per_chunk_naming_only_ids(tmp_path: Path) -> None:
    settings = ServingSettings(_env_file=None, data_dir=tmp_path, jobs_queue="q-test")  # type: ignore[call-arg]
    app = create_celery(settings)
    CeleryDispatcher(app, settings.jobs_queue).send("j" * 32, [[0, 1], [2]], "req-9")
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("q-test")
        messages = [queue.get(timeout=2) for _ in range(2)]
        for message in messages:
            message.ack()
    assert [m.headers["task"] for m in messages] == [TASK_NAME, TASK_NAME]
    assert [m.payload[0] for m in messages] == [["j" * 32, [0, 1]], ["j" * 32, [2]]]
    assert messages[0].headers["request_id"] == "req-9"
    assert len(messages[0].body) < 1000  # ids only, never image bytes


def test_from_settings_uses_the_job_store_and_chunk_size(tmp_path: Path, engine: Engine) -> None:
    settings = ServingSettings(_env_file=None, data_dir=tmp_path, jobs_chunk_size=3)  # type: ignore[call-arg]
    queue = JobQueue.from_settings(settings, engine=engine)
    assert queue.store.root == tmp_path / "jobs" and queue.chunk_size == 3
    assert isinstance(queue.dispatcher, CeleryDispatcher) and queue.dispatcher.queue == "cv-jobs"


def test_a_cancelled_job_releases_its_images(engine: Engine, store: ImageStore) -> None:
    queue = queue_with(engine, store, RecordingDispatcher())
    job_id = queue.submit(task="classify", params={}, version=None, **job_images(store, 2), request_id=None).job.id
    assert store.path(f"jobs/{job_id}").is_dir()
    assert queue.cancel(job_id)[1] is True
    assert not store.path(f"jobs/{job_id}").exists()
