"""The data plane in the real `bentoml serve`: PostgreSQL logs, the Redis cache, and both going away mid-traffic.

One server for the module, with its own PostgreSQL schema and Redis prefix, reaching both
through proxies the tests cut. Each test filters rows by its own request ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLog
from services.config import ServingSettings
from services.models.specs.lite0 import SERVED
from tests.integration.conftest import fresh_schema, postgres_url, redis_keys
from tests.integration.proxy import TcpProxy
from tests.integration.server import Server, start_server
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stack:
    server: Server
    pg_proxy: TcpProxy
    redis_proxy: TcpProxy
    db: Engine  # straight to PostgreSQL, for reading what the server wrote
    data_dir: Path


@pytest.fixture(scope="module")
def stack(
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],
    redis_endpoint: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("server-pg-redis")
    with (
        fresh_schema() as schema,
        redis_keys(f"cvtest:{schema}:") as prefix,
        TcpProxy(*postgres_endpoint) as pg_proxy,
        TcpProxy(*redis_endpoint) as redis_proxy,
    ):
        env = {
            "BENTOML_HOME": bentoml_home,
            "CV_DATA_DIR": str(data),
            "CV_DATABASE_URL": postgres_url(pg_proxy.port, schema),  # migrated by the api at start-up (local mode)
            "CV_DB_CONNECT_TIMEOUT_S": "2",
            "CV_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
            "CV_CACHE_ENABLED": "true",  # start_server turns it off by default
            "CV_CACHE_PREFIX": prefix,
            "CV_LOG_FLUSH_INTERVAL_S": "0.2",
            "CV_RECONNECT_INTERVAL_S": "0.5",
        }
        server = start_server(data / "server.log", env)
        url = postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0])
        db = create_db_engine(ServingSettings(_env_file=None, database_url=url).sqlalchemy_url)  # type: ignore[call-arg]
        try:
            yield Stack(server, pg_proxy, redis_proxy, db, data)
        finally:
            server.stop()
            db.dispose()


def rows(stack: Stack, prefix: str) -> list[InferenceLog]:
    with Session(stack.db) as session:
        query = select(InferenceLog).where(col(InferenceLog.request_id).startswith(prefix))
        return list(session.exec(query.order_by(col(InferenceLog.id))))


def health(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.server.url}/api/v1/health", timeout=10).json()
    return body


def spooled(stack: Stack) -> int:
    return sum(len(p.read_text().splitlines()) for p in (stack.data_dir / "spool").glob("*.jsonl"))


def classify(stack: Stack, image: bytes, request_id: str, content_type: str = "image/jpeg") -> httpx.Response:
    return httpx.post(
        f"{stack.server.url}/api/v1/classify",
        files={"image": ("image", image, content_type)},
        headers={"X-Request-ID": request_id},
        timeout=30,
    )


def test_logs_match_the_requests_sent(stack: Stack, photos: dict[str, bytes]) -> None:
    sent = {}
    for i, name in enumerate(["chelsea.jpg", "coffee.jpg"]):
        response = classify(stack, photos[name], f"logs-{i}")
        assert response.status_code == 200, response.text
        sent[f"logs-{i}"] = response.json()
    files = [("images", (n, photos[n], "image/jpeg")) for n in ("rocket.jpg", "chelsea.jpg")]
    batch = httpx.post(
        f"{stack.server.url}/api/v1/batch",
        files=files,
        data={"task": "detect"},
        headers={"X-Request-ID": "logs-batch"},
        timeout=30,
    )
    assert batch.status_code == 200
    wait_for(lambda: len(rows(stack, "logs-")) == 4, 60, what="4 rows")
    found = {(r.request_id, r.item_index): r for r in rows(stack, "logs-")}
    for request_id, body in sent.items():
        row = found[(request_id, 0)]
        assert (row.route, row.model, row.version, row.status) == ("/api/v1/classify", "classifier", SERVED, 200)
        assert row.top_label == body["predictions"][0]["label"] and row.image_sha256 == body["image"]["sha256"]
    for index, item in enumerate(batch.json()["items"]):
        row = found[("logs-batch", index)]
        assert row.route == "/api/v1/batch" and row.model == "detector"
        assert row.box_count == len(item["result"]["detections"])


def test_repeated_image_is_a_cache_hit(stack: Stack, photos: dict[str, bytes]) -> None:
    first = classify(stack, photos["astronaut.png"], "cache-1", "image/png")
    second = classify(stack, photos["astronaut.png"], "cache-2", "image/png")
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert second.json()["predictions"] == first.json()["predictions"]
    metrics = httpx.get(f"{stack.server.url}/api/v1/metrics", timeout=10).text
    hits = [line for line in metrics.splitlines() if line.startswith('cv_cache_hits_total{model="classifier"}')]
    assert hits and float(hits[0].split()[-1]) >= 1
    wait_for(lambda: len(rows(stack, "cache-")) == 2, 60, what="2 rows")
    assert [r.cached for r in rows(stack, "cache-")] == [False, True]


def test_database_down_during_traffic_then_replayed(stack: Stack, photos: dict[str, bytes]) -> None:
    stack.pg_proxy.stop()
    try:
        for i in range(15):
            response = classify(stack, photos["coffee.jpg" if i % 2 else "chelsea.jpg"], f"dbdown-{i}")
            assert response.status_code == 200, response.text
        wait_for(lambda: spooled(stack) == 15, 60, what="15 spooled records")
        body = health(stack)
        assert body["status"] == "degraded" and rows(stack, "dbdown-") == []
        assert body["data"]["inference_log"]["status"] == "degraded"
    finally:
        stack.pg_proxy.start()
    wait_for(lambda: len(rows(stack, "dbdown-")) == 15, 60, what="15 replayed rows")
    wait_for(lambda: health(stack)["status"] == "ok", 60, what="health ok")
    assert {r.request_id for r in rows(stack, "dbdown-")} == {f"dbdown-{i}" for i in range(15)}
    assert not list((stack.data_dir / "spool").glob("*.jsonl"))


def test_redis_down_then_back(stack: Stack, photos: dict[str, bytes]) -> None:
    stack.redis_proxy.stop()
    try:
        first, second = classify(stack, photos["rocket.jpg"], "rd-1"), classify(stack, photos["rocket.jpg"], "rd-2")
        assert first.status_code == second.status_code == 200
        assert second.headers["X-Cache"] == "hit"  # the in-process fallback
        body = health(stack)
        assert body["status"] == "degraded"
        assert body["data"]["cache"]["status"] == "degraded"
    finally:
        stack.redis_proxy.start()
    wait_for(lambda: health(stack)["status"] == "ok", 60, what="health ok")
    log = stack.server.log()
    assert "redis unreachable; serving from the in-process cache" in log and "redis is back" in log
