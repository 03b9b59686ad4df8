"""DataPlane.from_settings: local defaults, start-up migration, an unreachable database, closing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import inspect

from kernel.db.tables import InferenceLogCreate
from services.cache import MemoryCache, RedisCache
from services.config import ServingSettings
from services.http.caching import CachingClient
from services.http.dataplane import DataPlane
from services.http.recording import RecordingClient
from tests.unit.services.http.test_caching import FakeModels


def settings(tmp_path: Path, **kwargs: object) -> ServingSettings:
    return ServingSettings(_env_file=None, data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_local_defaults_are_sqlite_migrated_at_start_and_the_memory_cache(tmp_path: Path) -> None:
    plane = DataPlane.from_settings(settings(tmp_path))
    try:
        assert plane.engine.dialect.name == "sqlite" and (tmp_path / "cv.sqlite3").is_file()
        assert "inference_log" in inspect(plane.engine).get_table_names()
        assert isinstance(plane.cache, MemoryCache)
        wrapped = plane.wrap(FakeModels())
        assert isinstance(wrapped, RecordingClient) and isinstance(wrapped.inner, CachingClient)
        health = asyncio.run(plane.health())
        assert health["inference_log"]["status"] == "ok" and health["cache"]["backend"] == "memory"
    finally:
        asyncio.run(plane.close())


def test_the_running_experiments_are_read_at_start_not_by_the_first_request(tmp_path: Path) -> None:
    plane = DataPlane.from_settings(settings(tmp_path))
    try:
        assert not plane.experiments.stale()  # the first assignment finds a snapshot and reads nothing
    finally:
        asyncio.run(plane.close())


def test_production_does_not_migrate_at_start(tmp_path: Path) -> None:
    plane = DataPlane.from_settings(settings(tmp_path, db_migrate_on_start=False, cache_enabled=False))
    try:
        assert inspect(plane.engine).get_table_names() == []
        models = FakeModels()
        assert plane.wrap(models).inner is models  # recorded, not cached
    finally:
        asyncio.run(plane.close())


def test_unreachable_database_at_start_is_logged_and_logs_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = "postgresql://cv@127.0.0.1:1/cv"  # nothing listens on port 1
    with caplog.at_level(logging.ERROR, logger="services.http.dataplane"):
        plane = DataPlane.from_settings(
            settings(tmp_path, database_url=unreachable, db_migrate_on_start=True, redis_url="redis://127.0.0.1:1/0")
        )
    try:
        assert "database migration at start-up failed" in caplog.messages
        assert isinstance(plane.cache, RedisCache)
        plane.log_writer.submit([InferenceLogCreate(route="/api/v1/classify", status=200, latency_ms=1.0)])
        plane.log_writer.flush()
        health = asyncio.run(plane.health())
        assert health["inference_log"]["status"] == "degraded" and health["inference_log"]["spooled"] == 1
        assert health["inference_log"]["backend"] == "postgresql"
        assert health["cache"] == {"status": "degraded", "backend": "redis"}
    finally:
        asyncio.run(plane.close())
    assert list((tmp_path / "spool").glob("*.jsonl"))  # kept for the next start


def test_the_shadow_mirror_takes_the_raw_client_and_starts_and_stops_with_the_plane(tmp_path: Path) -> None:
    plane = DataPlane.from_settings(
        settings(tmp_path, shadow_queue_size=7, shadow_queue_mb=3, shadow_concurrency=2, shadow_sample_rate=0.25)
    )
    models = FakeModels()
    plane.wrap(models)
    mirror = plane.mirror
    assert mirror is not None and mirror.client is models and mirror.sink is plane.log_writer
    assert (mirror.queue.maxsize, mirror.queue_bytes, mirror.concurrency, mirror.sample_rate) == (7, 3 << 20, 2, 0.25)

    async def lifetime() -> int:
        plane.start()  # the api's start-up hook: on the server's event loop
        running = len(mirror._tasks)
        await plane.close()
        return running

    assert asyncio.run(lifetime()) == 3  # the status refresher and two workers
    assert mirror._tasks == []


def test_no_shadow_mirror_when_it_is_switched_off(tmp_path: Path) -> None:
    plane = DataPlane.from_settings(settings(tmp_path, shadow_enabled=False))
    try:
        plane.wrap(FakeModels())
        plane.start()  # nothing to start
        assert plane.mirror is None
    finally:
        asyncio.run(plane.close())
