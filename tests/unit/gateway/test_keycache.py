"""The key cache's rules without Redis: bounded LRU, TTLs, generations against a racing fill, serving only while live,
and the subscriber's handling of messages and of a lost connection."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from gateway.keycache import FLUSH, CachedKeyStore, Invalidations, KeyCache, KeyEvents
from gateway.keys import KeyStore, StoredKey
from tests.unit.gateway.conftest import HASH_KEY


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _stored(store: KeyStore, key: str) -> StoredKey:
    found = store.lookup(key.split("_")[1])
    assert found is not None
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> KeyCache:
    cache = KeyCache(max_entries=2, ttl_s=10, negative_ttl_s=1, clock=clock)
    cache.set_live(True)
    return cache


def test_entries_expire_after_their_ttl(cache: KeyCache, clock: Clock, store: KeyStore) -> None:
    key, _ = store.create(name="a", tier="pro")
    assert cache.put("p1", _stored(store, key), cache.generation)
    assert cache.put("p2", None, cache.generation)  # unknown prefix: the shorter TTL
    clock.now += 2
    assert cache.get("p2") is None
    assert cache.get("p1") is not None
    clock.now += 9
    assert cache.get("p1") is None and len(cache) == 0


def test_the_least_recently_used_entry_goes_first(cache: KeyCache) -> None:
    for prefix in ("a", "b"):
        cache.put(prefix, None, cache.generation)
    cache.get("a")
    cache.put("c", None, cache.generation)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


def test_a_fill_that_raced_an_invalidation_is_not_kept(cache: KeyCache) -> None:
    generation = cache.generation  # read the row ...
    cache.invalidate("a")  # ... the key changes meanwhile ...
    assert not cache.put("a", None, generation)  # ... and the stale row is dropped
    assert cache.get("a") is None


def test_flush_and_invalidate(cache: KeyCache) -> None:
    cache.put("a", None, cache.generation)
    cache.put("b", None, cache.generation)
    cache.invalidate("a")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.invalidate(FLUSH)
    assert len(cache) == 0


def test_a_cache_that_is_not_live_neither_serves_nor_keeps(cache: KeyCache) -> None:
    cache.put("a", None, cache.generation)
    cache.set_live(False)
    assert cache.get("a") is None and len(cache) == 0
    assert not cache.put("a", None, cache.generation)


def test_cached_store_reads_the_database_once_and_checks_the_secret_each_time(
    cache: KeyCache, store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, record = store.create(name="a", tier="pro")
    reads: list[str] = []
    lookup = store.lookup
    monkeypatch.setattr(store, "lookup", lambda prefix: reads.append(prefix) or lookup(prefix))
    cached = CachedKeyStore(store, cache)
    assert cached.authenticate(key) == record
    assert cached.authenticate(key) == record
    assert cached.authenticate(key[:-2] + "xx") is None  # a wrong secret for a cached prefix
    assert cached.authenticate("not-a-key") is None
    assert cached.authenticate("cvk_0123456789ab_x") is None
    assert cached.authenticate("cvk_0123456789ab_y") is None  # the negative entry
    assert reads == [record.prefix, "0123456789ab"]


def test_the_store_announces_every_change(store: KeyStore) -> None:
    changed: list[str] = []
    announcing = KeyStore(store._engine, hash_key=HASH_KEY, on_change=changed.append)
    _, record = announcing.create(name="a", tier="pro")
    assert announcing.set_tier(prefix=record.prefix, tier="free")
    assert announcing.revoke(prefix=record.prefix)
    assert not announcing.set_tier(prefix="000000000000", tier="free")
    assert changed == [record.prefix] * 3
    found = announcing.lookup(record.prefix)
    assert found is not None and found.record.tier == "free" and found.record.revoked_at is not None


def _message(kind: str, data: Any = 1) -> dict[str, object]:
    return {"type": kind, "data": data, "channel": b"keys", "pattern": None}


def test_the_subscriber_flushes_on_every_subscription_and_drops_announced_prefixes() -> None:
    cache = KeyCache()
    invalidations = Invalidations(redis.Redis(), "keys", cache)
    invalidations.handle(_message("subscribe"))
    assert cache.live and invalidations.subscriptions == 1
    cache.put("a", None, cache.generation)
    cache.put("b", None, cache.generation)
    invalidations.handle(_message("message", b"a"))
    assert cache.get("a") is None and cache.get("b") is not None
    invalidations.handle(_message("subscribe"))  # a resubscription: messages may have been missed
    assert len(cache) == 0 and invalidations.subscriptions == 2


class DeadRedis:
    """A client whose pub/sub connection always fails, and stops the subscriber after a few tries."""

    def __init__(self, invalidations: list[Invalidations]) -> None:
        self.tries = 0
        self._invalidations = invalidations

    def pubsub(self) -> DeadRedis:
        return self

    def subscribe(self, _channel: str) -> None:
        self.tries += 1
        if self.tries == 3:
            self._invalidations[0]._stop.set()
        raise redis.ConnectionError("refused")

    def close(self) -> None:
        pass


def test_without_a_subscription_the_cache_stays_off() -> None:
    cache = KeyCache()
    cache.set_live(True)
    holder: list[Invalidations] = []
    client = DeadRedis(holder)
    invalidations = Invalidations(client, "keys", cache, poll_s=0.001)  # type: ignore[arg-type]
    holder.append(invalidations)
    invalidations.run()
    assert client.tries == 3 and not cache.live


def test_events_publish_on_the_channel() -> None:
    class Client:
        def publish(self, channel: str, message: str) -> int:
            self.sent = (channel, message)
            return 2

    client = Client()
    assert KeyEvents(client, "cv:gw:keys").publish("abc") == 2  # type: ignore[arg-type]
    assert client.sent == ("cv:gw:keys", "abc")


def test_without_redis_the_gateway_reads_keys_from_the_database(tmp_path: Any) -> None:
    from gateway.app import build_keys
    from gateway.config import GatewaySettings

    settings = GatewaySettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert isinstance(build_keys(settings), KeyStore)
    uncached = settings.model_copy(update={"redis_url": "redis://x", "key_cache_entries": 0})
    assert isinstance(build_keys(uncached), KeyStore)
