"""Batch jobs with real Celery workers: killed mid-job, poison items, cancel; on the local broker and on Redis.

The api runs in this process (the real app and JobQueue); each worker is a real
``celery -A services.jobs.celery_app worker`` process running the real models, against the
machine's PostgreSQL (a fresh schema per test) and either the no-server local broker (a SQLite
file, as ``make serve`` uses) or Redis (a queue of the test's own).
"""

from __future__ import annotations

import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.routing import Mount

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.db.tables import BatchJob, new_id, utcnow
from services.config import ServingSettings
from services.http.app import create_app
from services.jobs.heartbeat import workers_health
from services.jobs.queue import JobQueue
from services.jobs.store import ImageStore
from tests.integration.conftest import REDIS_URL, fresh_schema, postgres_url
from tests.integration.worker import Worker, settings_from, start_worker
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


@dataclass
class JobStack:
    env: dict[str, str]
    settings: ServingSettings
    engine: Engine
    client: TestClient
    data: Path
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, name: str) -> Worker:
        worker = start_worker(self.env, self.data / f"worker-{name}.log", name)
        self.workers.append(worker)
        return worker

    def submit(self, images: list[tuple[str, bytes]], **fields: str) -> str:
        files = [
            ("images", (name, data, "image/png" if name.endswith(".png") else "image/jpeg")) for name, data in images
        ]
        response = self.client.post("/batch", files=files, data={"task": "classify", "mode": "job", **fields})
        assert response.status_code == 202, response.text
        assert response.headers["Location"] == response.json()["location"]
        return str(response.json()["id"])

    def job(self, job_id: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(f"/jobs/{job_id}", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(query), params))

    def logs(self) -> str:
        return "\n".join(w.log()[-3000:] for w in self.workers)


@pytest.fixture(params=["local", "redis"])
def stack(
    request: pytest.FixtureRequest,
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],
    tmp_path: Path,
) -> Iterator[JobStack]:
    queue_name = f"cvtest-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        request.getfixturevalue("redis_endpoint")
        broker = REDIS_URL
    else:
        broker = f"cvsql+sqlite:///{tmp_path / 'broker.sqlite3'}"
    with fresh_schema() as schema:
        env = {
            "BENTOML_HOME": bentoml_home,
            "CV_DATA_DIR": str(tmp_path),
            "CV_DATABASE_URL": postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0]),
            "CV_JOBS_BROKER_URL": broker,
            "CV_JOBS_QUEUE": queue_name,
            "CV_JOBS_CHUNK_SIZE": "4",
            "CV_JOBS_VISIBILITY_TIMEOUT_S": "5",  # a killed worker's chunk comes back after 5 s
            "CV_JOBS_POLL_INTERVAL_S": "0.1",
            "CV_JOBS_WORKER_CONCURRENCY": "1",
            "CV_ORT_INTRA_OP_THREADS": "1",
            "CV_JOBS_HEARTBEAT_INTERVAL_S": "0.5",  # a killed worker counts as gone 1.5 s later
        }
        settings = settings_from(env)
        engine = create_db_engine(settings.sqlalchemy_url)
        migrate.upgrade(engine)
        queue = JobQueue.from_settings(settings, engine=engine)
        app = create_app(settings, backend=lambda: None, jobs=lambda: queue)  # type: ignore[arg-type,return-value]
        parent = Starlette(routes=[Mount("/api/v1", app=app)])
        with TestClient(parent, base_url="http://testserver/api/v1") as client:
            stack = JobStack(env, settings, engine, client, tmp_path)
            try:
                yield stack
            finally:
                for worker in stack.workers:
                    worker.stop()
                engine.dispose()
                if request.param == "redis":
                    _drop_redis_queue(queue_name)


def _drop_redis_queue(name: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [k for pattern in (f"{name}*", f"_kombu.binding.{name}*") for k in client.scan_iter(match=pattern)]
    if keys:
        client.delete(*keys)
    client.close()


def answered(stack: JobStack, job_id: str) -> int:
    (row,) = stack.sql("SELECT succeeded_count + failed_count FROM batch_job WHERE id = :id", id=job_id)
    return int(row[0])


def bomb(side: int = 60_000) -> bytes:
    """A PNG whose header declares side x side pixels over a few bytes of data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def in_flight(stack: JobStack, job_id: str) -> int:
    """Items a worker has started and not answered (``attempts`` counts a start until the worker leaves)."""
    query = "SELECT count(*) FROM batch_job_item WHERE job_id = :id AND status = 'pending' AND attempts > 0"
    return int(stack.sql(query, id=job_id)[0][0])


def test_a_worker_killed_mid_job_loses_no_item_and_repeats_none(
    stack: JobStack, tiny_imagenet_val: list[tuple[str, bytes]]
) -> None:
    images = tiny_imagenet_val[:240]
    job_id = stack.submit(images, top_k="1")
    killed: list[int] = []  # items in flight when a worker died
    for attempt in range(3):  # the kill must land while a chunk runs; after it, the database shows which did
        worker = stack.start_worker(f"doomed-{attempt}")
        goal = 8 * (attempt + 1)
        wait_for(lambda: answered(stack, job_id) >= goal, 180, "answers", context=stack.logs)  # noqa: B023
        wait_for(lambda: in_flight(stack, job_id) > 0, 60, "a chunk in flight", interval_s=0.005, context=stack.logs)
        worker.kill()
        query = "SELECT item_index FROM batch_job_item WHERE job_id = :id AND status = 'pending' AND attempts > 0"
        killed = [row[0] for row in stack.sql(query, id=job_id)]
        if killed:
            break
    assert killed, "three kills all missed a running chunk"
    at_kill = answered(stack, job_id)
    assert at_kill < len(images), "the job ended before the kill; make it bigger"
    assert stack.job(job_id, limit=0)["status"] == "running"
    # Health sees a running job that nobody works: the dead worker's heartbeat went stale.
    interval = stack.settings.jobs_heartbeat_interval_s
    gone = {"status": "degraded", "workers": 0, "active_jobs": 1}
    wait_for(
        lambda: workers_health(stack.engine, interval_s=interval) == gone,
        30,
        "health to miss the worker",
        context=stack.logs,
    )

    stack.start_worker("survivor")
    wait_for(
        lambda: workers_health(stack.engine, interval_s=interval)["workers"] == 1, 60, "a heartbeat", context=stack.logs
    )
    wait_for(lambda: stack.job(job_id, limit=0)["status"] in TERMINAL, 240, "the job to end", context=stack.logs)
    job = stack.job(job_id, limit=1000)
    assert job["status"] == "succeeded", job["counts"]
    assert job["counts"]["succeeded"] == len(images) and job["progress"] == 1.0
    # The images go with the last answer: the worker deletes them just after recording it, so a moment after
    # the job reads as ended (a fixed read raced that on a loaded machine).
    folder = stack.settings.job_store.joinpath("jobs", job_id)
    wait_for(lambda: not folder.exists(), 30, "the job's images to be deleted", context=stack.logs)
    assert [i["index"] for i in job["items"]] == list(range(len(images)))
    assert all(i["result"]["predictions"] and i["http_status"] == 200 for i in job["items"])
    # Exactly once: one item row and one inference-log row per (job, index).
    per_item = stack.sql("SELECT item_index, count(*) FROM batch_job_item WHERE job_id = :id GROUP BY 1", id=job_id)
    assert sorted(per_item) == [(i, 1) for i in range(len(images))]
    per_log = stack.sql(
        "SELECT item_index, count(*), min(status) FROM inference_log WHERE job_id = :id GROUP BY 1", id=job_id
    )
    assert sorted(per_log) == [(i, 1, 200) for i in range(len(images))]
    # The chunk the dead worker held came back (visibility timeout) and its items ran again, one at a time.
    rerun = stack.sql("SELECT item_index, attempts FROM batch_job_item WHERE job_id = :id AND attempts > 1", id=job_id)
    assert {index for index, _ in rerun} >= set(killed)


def test_a_poison_item_fails_alone_and_a_cancelled_job_stops(
    stack: JobStack, tiny_imagenet_val: list[tuple[str, bytes]]
) -> None:
    stack.start_worker("only")
    images = [
        tiny_imagenet_val[0],
        ("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg"),
        tiny_imagenet_val[1],
        ("bomb.png", bomb()),
    ]
    job_id = stack.submit(images)
    wait_for(lambda: stack.job(job_id, limit=0)["status"] in TERMINAL, 120, "the poison job to end", context=stack.logs)
    job = stack.job(job_id)
    assert job["status"] == "partial"
    assert [i["http_status"] for i in job["items"]] == [200, 400, 200, 413]
    assert job["items"][1]["error"]["type"].endswith("invalid-image")
    assert job["items"][3]["error"]["type"].endswith("image-too-large")

    big = stack.submit(tiny_imagenet_val[:200])
    wait_for(lambda: answered(stack, big) >= 1, 120, "the big job to start", context=stack.logs)
    response = stack.client.delete(f"/jobs/{big}")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    time.sleep(2)  # the chunk in flight ends; later chunks are skipped
    job = stack.job(big, limit=0)
    assert job["status"] == "cancelled" and job["counts"]["cancelled"] > 0 and job["counts"]["pending"] == 0
    (logged,) = stack.sql("SELECT count(*) FROM inference_log WHERE job_id = :id", id=big)
    assert logged[0] == job["counts"]["succeeded"] + job["counts"]["failed"] < 200
    assert stack.client.delete(f"/jobs/{big}").status_code == 200  # already over: left as it is


@pytest.mark.parametrize("stack", ["local"], indirect=True)  # housekeeping is the same on every broker
def test_a_worker_sweeps_orphan_images_and_expired_jobs_at_start(stack: JobStack) -> None:
    """An api that died between storing a job's images and committing the job left a folder no job names;
    a job ended 31 days ago is past the 30-day retention. The worker's housekeeping, on PostgreSQL, removes both."""
    store = ImageStore(stack.settings.job_store)
    orphan = new_id()
    store.put(b"an image nobody will read", job_id=orphan)
    two_hours_ago = time.time() - 7200
    os.utime(store.root / "jobs" / orphan, (two_hours_ago, two_hours_ago))
    kept = new_id()
    store.put(b"a job waiting for its worker", job_id=kept)
    os.utime(store.root / "jobs" / kept, (two_hours_ago, two_hours_ago))
    with Session(stack.engine) as session:
        session.add(BatchJob(id=kept, task="classify"))
        session.add(BatchJob(task="classify", status="succeeded", finished_at=utcnow() - timedelta(days=31)))
        session.commit()

    stack.env |= {"CV_JOBS_ORPHAN_GRACE_S": "3600", "CV_JOBS_RETENTION_DAYS": "30"}
    stack.start_worker("sweeper")
    wait_for(lambda: orphan not in store.job_folders(), 60, "the worker's first sweep", context=stack.logs)
    assert stack.sql("SELECT id FROM batch_job ORDER BY id") == [(kept,)]
    assert kept in store.job_folders()
    assert '"message": "job housekeeping"' in stack.logs()


def _lose_redis_queue(name: str) -> int:
    """Delete the queue's messages as a Redis restart without persistence would (the bindings stay)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}*"))
    lost = sum(int(client.llen(key)) for key in keys)
    if keys:
        client.delete(*keys)
    client.close()
    return lost


@pytest.mark.parametrize("stack", ["redis"], indirect=True)  # the broker that keeps nothing on disk here
def test_a_job_whose_messages_the_broker_lost_is_sent_again_and_finishes(
    stack: JobStack, tiny_imagenet_val: list[tuple[str, bytes]]
) -> None:
    job_id = stack.submit(tiny_imagenet_val[:6])  # chunks of 4: two messages, waiting in Redis for a worker
    assert _lose_redis_queue(stack.env["CV_JOBS_QUEUE"]) == 2
    # Visibility timeout 5 s: a job untouched for 10 s with an empty queue is stalled; sweep every second.
    stack.env |= {"CV_JOBS_SWEEP_INTERVAL_S": "1"}
    stack.start_worker("rescuer")
    wait_for(lambda: stack.job(job_id, limit=0)["status"] in TERMINAL, 120, "the lost job to end", context=stack.logs)
    job = stack.job(job_id)
    assert job["status"] == "succeeded" and job["counts"]["succeeded"] == 6, job["counts"]
    assert '"message": "stalled job sent again"' in stack.logs()
    query = "SELECT count(DISTINCT item_index), count(*) FROM inference_log WHERE job_id = :id"
    assert tuple(stack.sql(query, id=job_id)[0]) == (6, 6)  # each item answered once
