"""GCRA and daily-quota arithmetic, with an injected clock: the Lua script on the real Redis, and its in-process
port (local mode without Redis), each test run against both, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from gateway.limiter import DAY_S, US, MemoryLimiter, RedisLimiter, emission_interval_us
from tests.integration.conftest import REDIS_URL
from tests.unit.gateway.conftest import make_tier

pytestmark = pytest.mark.integration

# Midnight UTC, 2026-11-27, in microseconds.
T0 = 1_795_737_600 * US


@pytest.fixture(params=["redis", "memory"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RedisLimiter | MemoryLimiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    client = redis.Redis.from_url(REDIS_URL)
    yield RedisLimiter(client, prefix=request.getfixturevalue("redis_prefix"))
    client.close()


Limiter = RedisLimiter | MemoryLimiter


def test_emission_interval() -> None:
    assert emission_interval_us(10) == 100_000
    assert emission_interval_us(3) == 333_333
    assert emission_interval_us(10**9) == 1


def test_burst_is_admitted_at_once_then_refused(limiter: Limiter) -> None:
    tier = make_tier(rps=10, burst=3)
    decisions = [limiter.check("c", tier, now_us=T0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].limit == 3 and decisions[0].reset_s == 1
    refused = decisions[3]
    assert refused.retry_after_us == 100_000 and refused.retry_after_s == 1


def test_one_request_per_interval_after_the_burst(limiter: Limiter) -> None:
    tier = make_tier(rps=10, burst=3)
    for _ in range(3):
        limiter.check("c", tier, now_us=T0)
    assert not limiter.check("c", tier, now_us=T0 + 99_999).allowed
    assert limiter.check("c", tier, now_us=T0 + 100_000).allowed
    assert not limiter.check("c", tier, now_us=T0 + 100_000).allowed
    assert limiter.check("c", tier, now_us=T0 + 200_000).allowed


def test_bucket_refills_fully_after_burst_intervals(limiter: Limiter) -> None:
    tier = make_tier(rps=10, burst=3)
    for _ in range(3):
        limiter.check("c", tier, now_us=T0)
    later = T0 + 10 * US
    assert [limiter.check("c", tier, now_us=later).allowed for _ in range(4)] == [True, True, True, False]


def test_clients_are_limited_separately(limiter: Limiter) -> None:
    tier = make_tier(rps=1, burst=1)
    assert limiter.check("a", tier, now_us=T0).allowed
    assert not limiter.check("a", tier, now_us=T0).allowed
    assert limiter.check("b", tier, now_us=T0).allowed


def test_daily_quota_refuses_until_midnight_and_resets_the_next_day(limiter: Limiter) -> None:
    tier = make_tier(rps=1000, burst=1000, daily_quota=2)
    noon = T0 + DAY_S // 2 * US
    assert limiter.check("c", tier, now_us=noon).quota_used == 1
    assert limiter.check("c", tier, now_us=noon).quota_used == 2
    over = limiter.check("c", tier, now_us=noon)
    assert not over.allowed and over.retry_after_s == DAY_S // 2 and over.quota_used == 2
    assert limiter.check("c", tier, now_us=T0 + DAY_S * US).allowed


def test_rate_refusal_does_not_spend_quota(limiter: Limiter) -> None:
    tier = make_tier(rps=1, burst=1, daily_quota=10)
    assert limiter.check("c", tier, now_us=T0).quota_used == 1
    refused = limiter.check("c", tier, now_us=T0)
    assert not refused.allowed and refused.quota_used is None
    assert limiter.check("c", tier, now_us=T0 + US).quota_used == 2


def test_the_limiters_clock_is_used_without_an_injected_one(limiter: Limiter) -> None:
    tier = make_tier(rps=1, burst=2)
    assert limiter.check("c", tier).allowed and limiter.check("c", tier).allowed
    assert not limiter.check("c", tier).allowed
    assert limiter.ping()


def test_unreachable_redis_raises_and_ping_says_down() -> None:
    dead = RedisLimiter.from_url("redis://127.0.0.1:1/0", timeout_s=0.2, prefix="x:")
    with pytest.raises(redis.RedisError):
        dead.check("c", make_tier())
    assert not dead.ping()


def test_random_traffic_gets_the_same_decisions_from_both() -> None:
    """Bursty arrivals over two days, two clients, a quota: the Lua script and its port agree on every field."""
    import random
    import uuid

    rng = random.Random(7)
    tier = make_tier(rps=5, burst=4, daily_quota=300)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        prefix = f"cvtest:{uuid.uuid4().hex[:12]}:"
        redis_limiter = RedisLimiter(client, prefix=prefix)
        memory = MemoryLimiter()
        now = T0 + DAY_S * US - 30 * US  # across a UTC midnight
        for _ in range(2000):
            now += int(rng.expovariate(1 / 40_000))
            who = rng.choice(["a", "b"])
            assert redis_limiter.check(who, tier, now_us=now) == memory.check(who, tier, now_us=now)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def test_a_clients_keys_share_one_cluster_slot(redis_prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        RedisLimiter(client, prefix=redis_prefix).check("abc", make_tier(daily_quota=10), now_us=T0)
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{redis_prefix}*"))
    finally:
        client.close()
    assert keys == [f"{redis_prefix}quota:{{abc}}:{T0 // (DAY_S * US)}", f"{redis_prefix}rate:{{abc}}"]
