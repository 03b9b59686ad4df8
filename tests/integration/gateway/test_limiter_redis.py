"""The limiter under load and with Redis cut: accuracy across concurrent clients and replicas, fail open/closed."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.app import Gateway, build_app
from gateway.keys import KeyStore
from gateway.limiter import MemoryLimiter, RedisLimiter
from gateway.tiers import Tiers
from tests.integration.conftest import REDIS_URL
from tests.integration.proxy import TcpProxy
from tests.unit.gateway.conftest import make_tier

pytestmark = pytest.mark.integration

CLIENTS = 50
DURATION_S = 10.0


@pytest.mark.slow
def test_fifty_concurrent_clients_on_one_key_are_admitted_within_one_percent(redis_prefix: str) -> None:
    tier = make_tier(rps=200, burst=50)
    # Two "replicas": separate connection pools, one shared Redis.
    replicas = [RedisLimiter(redis.Redis.from_url(REDIS_URL), prefix=redis_prefix) for _ in range(2)]
    decided: list[list[tuple[int, bool]]] = [[] for _ in range(CLIENTS)]  # (the limiter's clock in us, allowed)
    start = threading.Barrier(CLIENTS + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        limiter = replicas[i % len(replicas)]
        start.wait()
        while time.monotonic() < deadline[0]:
            decision = limiter.check("one-key", tier)
            decided[i].append((decision.decided_at_us, decision.allowed))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + DURATION_S
    start.wait()
    for thread in threads:
        thread.join()

    # Every decision in the order Redis took it (its TIME; scripts run one at a time).
    decisions = sorted(d for client_decisions in decided for d in client_decisions)
    times = [t for t, allowed in decisions if allowed]
    total = len(times)

    # 1. No race between the replicas: the shared script decided every request exactly as one serial GCRA given the
    # same times does (admissions per microsecond; the order of requests within one microsecond is not observable).
    serial = MemoryLimiter()
    replayed = Counter(t for t, _ in decisions if serial.check("one-key", tier, now_us=t).allowed)
    assert replayed == Counter(times)

    # 2. The rate: what a reference GCRA at the tier's nominal rate admits of the same requests at the same times (the
    # limiter's own clock: timing it from the test counted the barrier and the joins; clocks read in the client
    # threads lag the decisions by GIL waits). GCRA banks at most one burst of idle time, so time in which the bank
    # was full and no request came to spend it costs admissions the clients never asked for: CI once stalled this
    # 2-vCPU VM long enough to admit 1,962 against 2,046.6 (a long gap), and once 1,919 against 1,945.9 where no gap
    # between requests was longer than a burst (a stall broken by a few requests). The reference sees the same gaps.
    window_s = (times[-1] - times[0]) / 1e6
    interval_us = 1e6 / tier.rps
    tat, overflowed_us, expected = float(decisions[0][0]), 0.0, 0
    for t, _ in decisions:
        if tat < t:  # the bank was full meanwhile
            overflowed_us, tat = overflowed_us + t - tat, float(t)
        if tat + interval_us - interval_us * tier.burst <= t:
            expected, tat = expected + 1, tat + interval_us
    idle_s = overflowed_us / 1e6
    assert window_s > 0.9 * DURATION_S
    assert idle_s < 0.1 * window_s, f"the clients stalled {idle_s:.2f} s: this measures the machine, not the limiter"
    assert len(decisions) > 2 * expected, "the clients must offer more than the tier allows"
    print(
        f"limiter accuracy: admitted {total} in {window_s:.3f} s ({idle_s:.3f} s with the bank full, nothing offered);"
        f" the reference {expected}"
    )
    assert total <= tier.burst + tier.rps * window_s + 1, "never more than the tier allows"
    assert abs(total - expected) <= 0.01 * expected, (total, expected, idle_s, len(decisions))


@pytest.mark.parametrize("fail_open", [False, True])
def test_gateway_follows_the_fail_mode_while_redis_is_cut(
    redis_proxy: TcpProxy, redis_prefix: str, store: KeyStore, fail_open: bool
) -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{redis_proxy.port}/0", timeout_s=0.3, prefix=redis_prefix)
    client = TestClient(
        build_app(Gateway(keys=store, tiers=Tiers({"pro": make_tier()}), limiter=limiter, fail_open=fail_open))
    )
    key, _ = store.create(name="a", tier="pro")
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-Uri": "/api/v1/classify"}
    assert client.get("/auth", headers=headers).status_code == 200
    assert client.get("/health").json()["redis"] == "ok"

    redis_proxy.stop()
    cut = client.get("/auth", headers=headers)
    assert cut.status_code == (200 if fail_open else 503)
    health = client.get("/health").json()
    assert health["redis"] == "down" and health["fail_mode"] == ("open" if fail_open else "closed")

    redis_proxy.start()
    assert client.get("/auth", headers=headers).status_code == 200
    assert client.get("/health").json()["redis"] == "ok"
