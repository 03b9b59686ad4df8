"""Inference logs in a real PostgreSQL (a fresh schema per test), and the database going away mid-traffic.

The database "goes away" by cutting the TcpProxy the log writer connects through; the
machine's PostgreSQL keeps running for everyone else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import Session

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLogCreate
from services.clients.threaded import ThreadedClient
from services.config import ServingSettings, get_settings
from services.db.logs import count_inference_logs
from services.db.spool import Spool
from services.db.writer import DatabaseSink, InferenceLogWriter
from services.models.specs.lite0 import SERVED
from tests.integration.conftest import postgres_url
from tests.integration.http.apps import data_plane_client, logged_rows
from tests.integration.proxy import TcpProxy
from tests.unit.fakes import sample
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def settings_for(tmp_path: Path, pg_proxy: TcpProxy, pg_schema: str) -> ServingSettings:
    return get_settings().model_copy(
        update={
            "data_dir": tmp_path,
            "database_url": postgres_url(pg_proxy.port, pg_schema),
            "db_connect_timeout_s": 2,
            "log_flush_interval_s": 0.2,
            "reconnect_interval_s": 0.5,
        }
    )


def direct_url(endpoint: tuple[str, int], schema: str) -> str:
    """SQLAlchemy URL of the schema on the real server (not through the proxy)."""
    url = postgres_url(endpoint[1], schema, host=endpoint[0])
    return ServingSettings(_env_file=None, database_url=url).sqlalchemy_url  # type: ignore[call-arg]


def test_migrations_on_postgres_match_the_tables(pg_schema: str, postgres_endpoint: tuple[str, int]) -> None:
    engine = create_db_engine(direct_url(postgres_endpoint, pg_schema))
    migrate.upgrade(engine)
    assert {"inference_log", "batch_job", "batch_job_item", "alembic_version"} <= set(inspect(engine).get_table_names())
    assert migrate.drift(engine) == []
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_logs_match_the_requests_sent(
    local_backend: ThreadedClient, tmp_path: Path, pg_proxy: TcpProxy, pg_schema: str, photos: dict[str, bytes]
) -> None:
    settings = settings_for(tmp_path, pg_proxy, pg_schema)
    with data_plane_client(local_backend, settings) as (client, plane):
        assert plane.engine.dialect.name == "postgresql"
        sent = {}
        for i, name in enumerate(["chelsea.jpg", "coffee.jpg", "rocket.jpg"]):
            response = client.post(
                "/classify", files={"image": (name, photos[name], "image/jpeg")}, headers={"X-Request-ID": f"pg-{i}"}
            )
            assert response.status_code == 200
            sent[f"pg-{i}"] = response.json()
        rows = logged_rows(plane)
    assert {r.request_id for r in rows} == set(sent)
    for row in rows:
        body = sent[row.request_id or ""]
        assert row.image_sha256 == body["image"]["sha256"] and row.top_label == body["predictions"][0]["label"]
        assert (row.model, row.version, row.status) == ("classifier", SERVED, 200)
        assert row.created_at.tzinfo is not None


def test_database_down_during_traffic_spools_then_replays(
    local_backend: ThreadedClient,
    tmp_path: Path,
    pg_proxy: TcpProxy,
    pg_schema: str,
    postgres_endpoint: tuple[str, int],
    photos: dict[str, bytes],
) -> None:
    settings = settings_for(tmp_path, pg_proxy, pg_schema)
    image = {"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}
    replayed = sample("cv_inference_log_records_total", {"outcome": "replayed"})
    direct = create_db_engine(direct_url(postgres_endpoint, pg_schema))
    with data_plane_client(local_backend, settings) as (client, plane):
        writer = plane.log_writer

        def stored() -> int:  # read straight from PostgreSQL, not through the proxy
            with Session(direct) as session:
                return count_inference_logs(session=session, route="/api/v1/classify")

        for i in range(5):
            assert client.post("/classify", files=image, headers={"X-Request-ID": f"up-{i}"}).status_code == 200
        wait_for(lambda: stored() == 5)

        pg_proxy.stop()  # the database is gone for this api
        for i in range(20):
            response = client.post("/classify", files=image, headers={"X-Request-ID": f"down-{i}"})
            assert response.status_code == 200  # serving goes on
        wait_for(lambda: writer.describe()["spooled"] == 20)
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["data"]["inference_log"]["status"] == "degraded"
        assert writer.spool.count() == 20 and stored() == 5
        assert sample("cv_inference_log_sink_up", {}) == 0

        pg_proxy.start()  # back: the writer replays the spool by itself
        wait_for(lambda: stored() == 25)
        wait_for(lambda: client.get("/health").json()["status"] == "ok")
        assert writer.spool.pending() == [] and writer.describe()["spooled"] == 0
        assert sample("cv_inference_log_records_total", {"outcome": "replayed"}) == replayed + 20
        for i in range(3):
            client.post("/classify", files=image, headers={"X-Request-ID": f"after-{i}"})
        wait_for(lambda: stored() == 28)
        request_ids = {r.request_id for r in logged_rows(plane)}
    direct.dispose()
    assert request_ids == {f"up-{i}" for i in range(5)} | {f"down-{i}" for i in range(20)} | {
        f"after-{i}" for i in range(3)
    }


def test_replaying_records_already_stored_adds_nothing(tmp_path: Path, pg_proxy: TcpProxy, pg_schema: str) -> None:
    engine = create_db_engine(settings_for(tmp_path, pg_proxy, pg_schema).sqlalchemy_url)
    migrate.upgrade(engine)
    records = [InferenceLogCreate(route="/api/v1/detect", status=200, latency_ms=3.0, item_index=i) for i in range(4)]
    DatabaseSink(engine).write(records[:2])  # half reached the database before a crash...
    crashed = Spool(tmp_path / "spool")
    crashed.append(records)  # ...and all four were spooled
    crashed.close()
    writer = InferenceLogWriter(DatabaseSink(engine), Spool(tmp_path / "spool"))
    writer.flush()
    with Session(engine) as session:
        assert count_inference_logs(session=session) == 4
    assert writer.status == "ok"
    writer.close()
    engine.dispose()
