"""MemoryCache (LRU, expiry) and RedisCache's fallback around a fake client that fails on demand."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.cache import MemoryCache, RedisCache, build_cache
from services.config import ServingSettings
from tests.unit.fakes import sample


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_memory_cache_returns_what_was_set_until_it_expires() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    run(cache.set_many({"a": b"1", "b": b"2"}, ttl_s=10))
    assert run(cache.get_many(["a", "b", "c"])) == {"a": b"1", "b": b"2"}
    clock.now += 10
    assert run(cache.get_many(["a"])) == {}
    assert len(cache) == 1  # "a" was evicted on read; "b" waits for its own read


def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_items=2)
    run(cache.set_many({"a": b"1", "b": b"2"}, ttl_s=60))
    run(cache.get_many(["a"]))  # "a" is now the most recent
    run(cache.set_many({"c": b"3"}, ttl_s=60))
    assert run(cache.get_many(["a", "b", "c"])) == {"a": b"1", "c": b"3"}


def test_memory_cache_check_and_close() -> None:
    cache = MemoryCache()
    run(cache.set_many({"a": b"1"}, ttl_s=60))
    assert run(cache.check()) == {"status": "ok", "backend": "memory", "entries": 1}
    run(cache.close())
    assert len(cache) == 0


class FakeRedis:
    """Just enough of redis.asyncio.Redis; ``down`` makes every call fail as a dead server does."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}
        self.down = False
        self.calls = 0
        self.closed = False

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("Connection refused")

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self._check()
        return [self.data.get(k) for k in keys]

    async def ping(self) -> bool:
        self._check()
        return True

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    async def aclose(self) -> None:
        self.closed = True


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, bytes, int]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: bytes, ex: int) -> None:
        self.ops.append((key, value, ex))

    async def execute(self) -> None:
        self.redis._check()
        for key, value, ex in self.ops:
            self.redis.data[key], self.redis.ttls[key] = value, ex


def test_redis_cache_stores_in_redis_with_the_ttl() -> None:
    redis = FakeRedis()
    cache = RedisCache(redis, MemoryCache())
    run(cache.set_many({"k": b"v"}, ttl_s=30))
    assert redis.data == {"k": b"v"} and redis.ttls == {"k": 30}
    assert run(cache.get_many(["k", "x"])) == {"k": b"v"}
    assert run(cache.get_many([])) == {} and run(cache.set_many({}, 30)) is None
    assert run(cache.check()) == {"status": "ok", "backend": "redis"}


def test_redis_down_falls_back_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    clock, redis, fallback = Clock(), FakeRedis(), MemoryCache()
    cache = RedisCache(redis, fallback, retry_interval_s=5, clock=clock)
    redis.down = True
    with caplog.at_level(logging.INFO, logger="services.cache"):
        run(cache.set_many({"k": b"v"}, ttl_s=30))  # fails over to memory
        assert cache.status == "degraded"
        assert sample("cv_cache_backend_up", {"backend": "redis"}) == 0
        calls = redis.calls
        assert run(cache.get_many(["k"])) == {"k": b"v"}  # served from memory...
        assert redis.calls == calls  # ...without trying Redis again before the retry is due
        assert run(cache.check())["status"] == "degraded"
        clock.now += 5
        redis.down = False
        assert run(cache.check()) == {"status": "ok", "backend": "redis"}  # health's ping brings it back
    assert sample("cv_cache_backend_up", {"backend": "redis"}) == 1
    assert len(fallback) == 0  # outage-only entries are dropped
    messages = [r.getMessage() for r in caplog.records]
    assert "redis unreachable; serving from the in-process cache" in messages
    assert "redis is back; the shared cache serves again" in messages


def test_redis_still_down_at_retry_waits_another_interval() -> None:
    clock, redis = Clock(), FakeRedis()
    cache = RedisCache(redis, MemoryCache(), retry_interval_s=5, clock=clock)
    redis.down = True
    run(cache.get_many(["k"]))
    clock.now += 5
    run(cache.get_many(["k"]))  # one try, fails
    calls = redis.calls
    clock.now += 4
    run(cache.get_many(["k"]))
    assert redis.calls == calls and cache.status == "degraded"


def test_close_closes_the_client() -> None:
    redis = FakeRedis()
    run(RedisCache(redis, MemoryCache()).close())
    assert redis.closed


def test_build_cache_chooses_by_settings(tmp_path: Any) -> None:
    local = ServingSettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert isinstance(build_cache(local), MemoryCache)
    shared = local.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    cache = build_cache(shared)
    assert isinstance(cache, RedisCache)
    run(cache.close())
