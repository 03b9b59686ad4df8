"""The result cache on a real Redis (a key prefix per test), and Redis going away and coming back.

Redis "goes away" by cutting the TcpProxy the api connects through; the machine's Redis keeps
running for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import redis

from services.cache import RedisCache
from services.clients.threaded import ThreadedClient
from services.config import ServingSettings, get_settings
from tests.integration.conftest import REDIS_URL
from tests.integration.http.apps import data_plane_client
from tests.integration.proxy import TcpProxy
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def settings_for(tmp_path: Path, redis_proxy: TcpProxy, prefix: str) -> ServingSettings:
    return get_settings().model_copy(
        update={
            "data_dir": tmp_path,
            "redis_url": f"redis://127.0.0.1:{redis_proxy.port}/0",
            "cache_prefix": prefix,
            "reconnect_interval_s": 0.5,
        }
    )


def keys(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


def test_redis_cache_round_trip_with_ttl(tmp_path: Path, redis_proxy: TcpProxy, redis_prefix: str) -> None:
    async def scenario() -> None:
        cache = RedisCache.from_url(f"redis://127.0.0.1:{redis_proxy.port}/0", get_settings())
        await cache.set_many({f"{redis_prefix}a": b"1"}, ttl_s=30)
        assert await cache.get_many([f"{redis_prefix}a", f"{redis_prefix}b"]) == {f"{redis_prefix}a": b"1"}
        assert (await cache.check())["status"] == "ok"
        await cache.close()

    asyncio.run(scenario())
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.ttl(f"{redis_prefix}a") <= 30
    client.close()


def test_repeated_image_is_a_hit_shared_through_redis(
    local_backend: ThreadedClient, tmp_path: Path, redis_proxy: TcpProxy, redis_prefix: str, photos: dict[str, bytes]
) -> None:
    image = {"image": ("c.jpg", photos["coffee.jpg"], "image/jpeg")}
    settings = settings_for(tmp_path, redis_proxy, redis_prefix)
    with data_plane_client(local_backend, settings) as (client, _):
        assert client.post("/classify", files=image).headers["X-Cache"] == "miss"
        assert len(keys(redis_prefix)) == 1
    # Another api replica (a fresh process would do the same) finds the answer in Redis.
    with data_plane_client(local_backend, settings.model_copy(update={"data_dir": tmp_path / "b"})) as (client, _):
        response = client.post("/classify", files=image)
        assert response.headers["X-Cache"] == "hit" and response.json()["cached"] is True


def test_redis_down_falls_back_to_memory_and_recovers(
    local_backend: ThreadedClient,
    tmp_path: Path,
    redis_proxy: TcpProxy,
    redis_prefix: str,
    photos: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    chelsea = {"image": ("c.jpg", photos["chelsea.jpg"], "image/jpeg")}
    rocket = {"image": ("r.jpg", photos["rocket.jpg"], "image/jpeg")}
    with (
        caplog.at_level(logging.INFO, logger="services.cache"),
        data_plane_client(local_backend, settings_for(tmp_path, redis_proxy, redis_prefix)) as (client, _),
    ):
        assert client.post("/classify", files=chelsea).headers["X-Cache"] == "miss"
        assert client.get("/health").json()["data"]["cache"] == {"status": "ok", "backend": "redis"}

        redis_proxy.stop()
        first = client.post("/classify", files=rocket)
        second = client.post("/classify", files=rocket)
        assert first.status_code == second.status_code == 200  # serving goes on
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")  # on the in-process cache
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["data"]["cache"]["status"] == "degraded"
        assert "redis unreachable; serving from the in-process cache" in caplog.messages

        redis_proxy.start()
        wait_for(lambda: client.get("/health").json()["data"]["cache"]["status"] == "ok")
        assert client.get("/health").json()["status"] == "ok"
        assert "redis is back; the shared cache serves again" in caplog.messages
        assert client.post("/classify", files=chelsea).headers["X-Cache"] == "hit"  # stored in Redis before the cut
        client.post("/classify", files=rocket)  # the outage-only entry is gone; stored in Redis now
    assert len(keys(redis_prefix)) == 2
