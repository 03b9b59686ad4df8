"""The result cache: one small interface, an in-process and a Redis implementation, chosen once at start-up.

Values are opaque bytes under string keys, each with a TTL. :class:`RedisCache` never fails a
request: when Redis stops answering it serves from an in-process :class:`MemoryCache`, reports
``degraded``, logs the change, and tries Redis again every ``retry_interval_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from services.config import ServingSettings
from services.metrics import CACHE_BACKEND_UP

log = logging.getLogger(__name__)
T = TypeVar("T")


class Cache(Protocol):
    """What the caching backend needs from a cache."""

    name: str

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values found, by key (missing and expired keys are left out)."""
        ...

    async def set_many(self, values: Mapping[str, bytes], ttl_s: int) -> None:
        """Store values that expire after ``ttl_s`` seconds."""
        ...

    async def check(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded", "backend": ...}``; may try to reconnect."""
        ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded LRU with per-entry expiry; the local-mode cache and Redis' fallback."""

    name = "memory"

    def __init__(self, max_items: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        now = self._clock()
        found: dict[str, bytes] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry[0] <= now:
                    del self._entries[key]
                    continue
                self._entries.move_to_end(key)
                found[key] = entry[1]
        return found

    async def set_many(self, values: Mapping[str, bytes], ttl_s: int) -> None:
        expires = self._clock() + ttl_s
        with self._lock:
            for key, value in values.items():
                self._entries[key] = (expires, value)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_items:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    async def check(self) -> dict[str, Any]:
        return {"status": "ok", "backend": self.name, "entries": len(self._entries)}

    async def close(self) -> None:
        self.clear()


class RedisCache:
    """Redis shared by every api replica, with an in-process fallback while Redis is away."""

    name = "redis"

    def __init__(
        self,
        client: Any,
        fallback: MemoryCache,
        *,
        retry_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client  # a redis.asyncio.Redis
        self.fallback = fallback
        self.retry_interval_s = retry_interval_s
        self._clock = clock
        self._down = False
        self._retry_at = 0.0
        CACHE_BACKEND_UP.labels(self.name).set(1)

    @classmethod
    def from_url(cls, url: str, settings: ServingSettings) -> RedisCache:
        from redis.asyncio import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = Redis.from_url(
            url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), 0),  # a request never waits on reconnect loops: the fallback answers
        )
        return cls(client, MemoryCache(settings.cache_memory_items), retry_interval_s=settings.reconnect_interval_s)

    @property
    def status(self) -> str:
        return "degraded" if self._down else "ok"

    async def _use(self, call: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        if self._down and self._clock() < self._retry_at:
            return await fallback()
        try:
            result = await call()
        except Exception as exc:  # redis.RedisError, OSError, timeouts: whatever it is, serving goes on
            self._went_down(exc)
            return await fallback()
        if self._down:
            self._came_back()
        return result

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}

        async def from_redis() -> dict[str, bytes]:
            values = await self.client.mget(list(keys))
            return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

        return await self._use(from_redis, lambda: self.fallback.get_many(keys))

    async def set_many(self, values: Mapping[str, bytes], ttl_s: int) -> None:
        if not values:
            return

        async def to_redis() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(key, value, ex=ttl_s)
                await pipe.execute()

        await self._use(to_redis, lambda: self.fallback.set_many(values, ttl_s))

    async def check(self) -> dict[str, Any]:
        """Ping Redis when a retry is due, so health (not only traffic) brings it back."""

        async def ping() -> bool:
            return bool(await self.client.ping())

        async def no() -> bool:
            return False

        await self._use(ping, no)
        return {"status": self.status, "backend": self.name}

    async def close(self) -> None:
        await self.client.aclose()
        await self.fallback.close()

    def _went_down(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self.retry_interval_s
        if not self._down:
            self._down = True
            CACHE_BACKEND_UP.labels(self.name).set(0)
            log.warning("redis unreachable; serving from the in-process cache", extra={"error": repr(exc)})

    def _came_back(self) -> None:
        self._down = False
        CACHE_BACKEND_UP.labels(self.name).set(1)
        self.fallback.clear()  # what it held was only for the outage; Redis is the shared truth again
        log.info("redis is back; the shared cache serves again")


def build_cache(settings: ServingSettings) -> Cache:
    """Redis when ``CV_REDIS_URL`` is set, else the in-process cache."""
    if settings.redis_url:
        return RedisCache.from_url(settings.redis_url, settings)
    return MemoryCache(settings.cache_memory_items)
