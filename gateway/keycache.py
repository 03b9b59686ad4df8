"""The auth service's key cache, kept honest by Redis pub/sub (ADR 0013).

Every replica keeps the rows it has read (and the prefixes it found unknown) in a bounded LRU map with a TTL as a
backstop. Whatever changes a key (``python -m gateway keys revoke|tier|create``, or :class:`~gateway.keys.KeyStore`
anywhere) publishes the prefix on one channel after its commit; every replica's :class:`Invalidations` thread is
subscribed and drops the prefix at once. The cache serves only while that subscription is confirmed: each
(re)subscription (redis-py re-subscribes by itself after a lost connection) flushes it, since messages may have been
missed meanwhile, and while the subscription is down every request reads the database, as without a cache.

A fill races an invalidation (read the row, the key is revoked and announced, then store the stale row): each
invalidation bumps a generation and a fill is kept only if the generation did not move while it read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from gateway.keys import InvalidKeyFormat, KeyStore, StoredKey, checked, parse_key
from gateway.metrics import KEY_CACHE, KEY_CACHE_LIVE, KEY_INVALIDATIONS
from kernel.db.tables import ApiKeyPublic

logger = logging.getLogger("gateway.keycache")

FLUSH = "*"  # published instead of a prefix: every replica drops its whole cache


@dataclass(frozen=True)
class _Entry:
    stored: StoredKey | None  # None: the prefix is unknown (a negative entry)
    expires_at: float


class KeyCache:
    """Prefix -> row (or "unknown"), bounded, with a TTL; serves only while :attr:`live`."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.ttl_s, self.negative_ttl_s = max_entries, ttl_s, negative_ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0
        self.live = False  # set by the subscriber once its subscription is confirmed

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, prefix: str) -> _Entry | None:
        """The fresh entry for ``prefix``, or None (a miss, or the cache is not live)."""
        if not self.live:
            return None
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._entries[prefix]
                return None
            self._entries.move_to_end(prefix)
            return entry

    def put(self, prefix: str, stored: StoredKey | None, generation: int) -> bool:
        """Keep what was read at ``generation``; refused when an invalidation came since, or while not live."""
        ttl = self.ttl_s if stored is not None else self.negative_ttl_s
        with self._lock:
            if not self.live or generation != self.generation:
                return False
            self._entries[prefix] = _Entry(stored, self._clock() + ttl)
            self._entries.move_to_end(prefix)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def invalidate(self, prefix: str) -> None:
        """Drop ``prefix`` (:data:`FLUSH`: everything)."""
        with self._lock:
            self.generation += 1
            if prefix == FLUSH:
                self._entries.clear()
            else:
                self._entries.pop(prefix, None)

    def set_live(self, live: bool) -> None:
        """Start or stop serving; either way everything held so far is dropped."""
        with self._lock:
            self.generation += 1
            self._entries.clear()
            self.live = live
        KEY_CACHE_LIVE.set(1 if live else 0)


class CachedKeyStore:
    """:meth:`KeyStore.authenticate` through a :class:`KeyCache`: the secret is checked on every request."""

    def __init__(self, store: KeyStore, cache: KeyCache, invalidations: Invalidations | None = None) -> None:
        self.store = store
        self.cache = cache
        self.invalidations = invalidations  # what keeps ``cache`` honest (None in unit tests)

    def holds(self, key: str) -> bool:
        """Whether ``key``'s prefix has a fresh entry (authenticating it would read no database)."""
        try:
            return self.cache.get(parse_key(key).prefix) is not None
        except InvalidKeyFormat:
            return True  # refused without a lookup

    def authenticate(self, key: str) -> ApiKeyPublic | None:
        """As :meth:`KeyStore.authenticate`, reading the database only on a miss."""
        try:
            parts = parse_key(key)
        except InvalidKeyFormat:
            return None
        entry = self.cache.get(parts.prefix)
        if entry is not None:
            KEY_CACHE.labels("hit").inc()
            return checked(parts, entry.stored, hash_key=self.store.hash_key)
        KEY_CACHE.labels("miss").inc()
        generation = self.cache.generation
        stored = self.store.lookup(parts.prefix)
        self.cache.put(parts.prefix, stored, generation)
        return checked(parts, stored, hash_key=self.store.hash_key)


class KeyEvents:
    """Publishes a changed key's prefix on the channel every auth replica listens to."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._client = client
        self.channel = channel

    def publish(self, prefix: str) -> int:
        """Announce ``prefix``; the number of subscribed replicas that received it."""
        return int(self._client.publish(self.channel, prefix))


class Invalidations:
    """A daemon thread subscribed to the key channel: invalidates the cache, flushes it on every (re)subscription."""

    def __init__(self, client: redis.Redis, channel: str, cache: KeyCache, *, poll_s: float = 1.0) -> None:
        self._client = client
        self.channel = channel
        self.cache = cache
        self.poll_s = poll_s
        self.subscriptions = 0  # confirmed (re)subscriptions, each of which flushed the cache
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Invalidations:
        self._thread = threading.Thread(target=self.run, name="key-invalidations", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        """Subscribe and listen until stopped; after an error, serve from the database and try again."""
        while not self._stop.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError) as error:
                if self.cache.live:
                    logger.warning("key invalidations lost (%s): the cache is off until resubscribed", error)
                self.cache.set_live(False)
                self._stop.wait(self.poll_s)
        self.cache.set_live(False)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=self.poll_s)
                if message is not None:
                    self.handle(message)
        finally:
            pubsub.close()

    def handle(self, message: dict[str, object]) -> None:
        """One pub/sub message: a confirmed subscription flushes and turns the cache on; a prefix is dropped."""
        if message["type"] == "subscribe":
            self.cache.set_live(True)
            self.subscriptions += 1
            logger.info("key invalidations subscribed (%d): cache flushed", self.subscriptions)
        elif message["type"] == "message":
            data = message["data"]
            prefix = data.decode() if isinstance(data, bytes) else str(data)
            KEY_INVALIDATIONS.inc()
            self.cache.invalidate(prefix)
