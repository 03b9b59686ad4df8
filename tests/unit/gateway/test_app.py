"""The ForwardAuth endpoint and health: 401, 403, 429 as problem+json, upstream headers, fail open/closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient

from gateway.app import Gateway, build_app, create_app
from gateway.config import GatewaySettings
from gateway.keys import KeyStore
from gateway.limiter import Decision
from gateway.tiers import Tier, Tiers
from kernel.errors import PROBLEM_CONTENT_TYPE
from kernel.signing import verify


class FakeLimiter:
    """Admits ``allow`` requests, then refuses; raises when ``down``."""

    def __init__(self, allow: int = 100) -> None:
        self.allow = allow
        self.down = False
        self.calls = 0

    def check(self, client_id: str, tier: Tier) -> Decision:
        if self.down:
            raise redis.ConnectionError("down")
        self.calls += 1
        allowed = self.calls <= self.allow
        return Decision(
            allowed=allowed,
            limit=tier.burst,
            remaining=max(0, self.allow - self.calls),
            reset_s=1,
            retry_after_s=0 if allowed else 2,
        )

    def ping(self) -> bool:
        return not self.down


def _client(store: KeyStore, tiers: Tiers, limiter: FakeLimiter, *, fail_open: bool = False) -> TestClient:
    return TestClient(build_app(Gateway(keys=store, tiers=tiers, limiter=limiter, fail_open=fail_open)))


def _auth(client: TestClient, key: str | None, uri: str = "/api/v1/classify", **headers: str) -> Any:
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    return client.get("/auth", headers={"X-Forwarded-Uri": uri, "X-Forwarded-Method": "POST", **headers})


def _assert_problem(response: Any, status: int, slug: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["status"] == status and body["type"].endswith(slug)
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_valid_key_passes_with_upstream_and_rate_headers(store: KeyStore, tiers: Tiers) -> None:
    key, record = store.create(name="a", tier="pro")
    response = _auth(_client(store, tiers, FakeLimiter()), key, **{"X-Request-ID": "req-1"})
    assert response.status_code == 200
    h = response.headers
    assert h["X-Client-Id"] == record.prefix and h["X-Tier"] == "pro" and h["X-Request-ID"] == "req-1"
    assert h["RateLimit-Limit"] == "3" and h["RateLimit-Remaining"] == "99" and h["RateLimit-Reset"] == "1"
    assert h["X-Tier-Max-Batch"] == "4" and h["X-Tier-Max-Image-Bytes"] == "1024"
    assert "Retry-After" not in h


def test_with_a_signing_secret_the_upstream_headers_are_signed_for_the_api(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    gateway = Gateway(keys=store, tiers=tiers, limiter=FakeLimiter(), fail_open=False, signing_secret="s" * 32)
    response = _auth(TestClient(build_app(gateway)), key, "/api/v1/classify?top_k=3", **{"X-Request-ID": "req-9"})
    h = {k.lower(): v for k, v in response.headers.items()}
    request = {"method": "POST", "uri": "/api/v1/classify?top_k=3", "request_id": "req-9"}
    assert verify("s" * 32, h["x-gateway-signature"], **request, headers=h)
    assert not verify("s" * 32, h["x-gateway-signature"], **{**request, "method": "GET"}, headers=h)
    # Without a secret nothing is signed (the api then trusts the network alone).
    assert "X-Gateway-Signature" not in _auth(_client(store, tiers, FakeLimiter()), key).headers


def test_x_api_key_header_is_accepted_and_a_request_id_is_made(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    response = _auth(_client(store, tiers, FakeLimiter()), None, **{"X-API-Key": key})
    assert response.status_code == 200 and len(response.headers["X-Request-ID"]) == 32


def test_missing_key_is_401(store: KeyStore, tiers: Tiers) -> None:
    response = _auth(_client(store, tiers, FakeLimiter()), None)
    _assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401(store: KeyStore, tiers: Tiers) -> None:
    _assert_problem(_auth(_client(store, tiers, FakeLimiter()), "cvk_0123456789ab_nope"), 401, "unauthenticated")


def test_revoked_key_is_403(store: KeyStore, tiers: Tiers) -> None:
    key, record = store.create(name="a", tier="pro")
    store.revoke(prefix=record.prefix)
    _assert_problem(_auth(_client(store, tiers, FakeLimiter()), key), 403, "forbidden")


def test_route_outside_the_tier_is_403(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="free")
    client = _client(store, tiers, FakeLimiter())
    assert _auth(client, key, "/api/v1/classify").status_code == 200
    _assert_problem(_auth(client, key, "/api/v1/detect"), 403, "forbidden")


def test_key_of_an_unconfigured_tier_is_403(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="gold")
    _assert_problem(_auth(_client(store, tiers, FakeLimiter()), key), 403, "forbidden")


def test_over_the_limit_is_429_with_retry_after(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    client = _client(store, tiers, FakeLimiter(allow=1))
    assert _auth(client, key).status_code == 200
    response = _auth(client, key)
    _assert_problem(response, 429, "rate-limited")
    assert response.headers["Retry-After"] == "2" and response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Limit"] == "3"


def test_redis_down_fails_closed_with_503(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    limiter = FakeLimiter()
    limiter.down = True
    client = _client(store, tiers, limiter)
    response = _auth(client, key)
    _assert_problem(response, 503, "rate-limiter-unavailable")
    assert response.headers["Retry-After"] == "1"
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "limiter": "redis", "redis": "down", "fail_mode": "closed"}


def test_redis_down_fails_open_when_configured(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    limiter = FakeLimiter()
    limiter.down = True
    client = _client(store, tiers, limiter, fail_open=True)
    response = _auth(client, key)
    assert response.status_code == 200 and response.headers["RateLimit-Remaining"] == "3"
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "degraded", "limiter": "redis", "redis": "down", "fail_mode": "open"}


def test_health_ok(store: KeyStore, tiers: Tiers) -> None:
    health = _client(store, tiers, FakeLimiter()).get("/health")
    assert health.json() == {"status": "ok", "limiter": "redis", "redis": "ok", "fail_mode": "closed"}


def test_create_app_wires_settings(tmp_path: Path) -> None:
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2
    )  # type: ignore[call-arg]
    health = TestClient(create_app(settings)).get("/health")
    assert health.json()["redis"] == "down"


def test_without_a_redis_url_local_mode_limits_in_process(tmp_path: Path) -> None:
    settings = GatewaySettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    from kernel.db import migrate
    from kernel.db.session import create_db_engine

    migrate.upgrade(create_db_engine(settings.sqlalchemy_url))
    key, _ = KeyStore(create_db_engine(settings.sqlalchemy_url), hash_key=b"changethis").create(name="a", tier="free")
    client = TestClient(create_app(settings))
    assert client.get("/health").json() == {"status": "ok", "limiter": "memory", "fail_mode": "closed"}
    statuses = [_auth(client, key, uri="/api/v1/models").status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[-1] == 429  # free: burst 5 (gateway/tiers.yaml)


def test_a_cached_key_is_decided_on_the_event_loop_and_a_miss_in_a_thread(
    store: KeyStore, tiers: Tiers, monkeypatch: Any
) -> None:
    import threading

    from gateway.keycache import CachedKeyStore, KeyCache

    cache = KeyCache()
    cache.set_live(True)
    gateway = Gateway(keys=CachedKeyStore(store, cache), tiers=tiers, limiter=FakeLimiter(), fail_open=False)
    threads: list[str] = []
    decide = gateway.decide

    def recorded(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return decide(*args)

    monkeypatch.setattr(gateway, "decide", recorded)
    key, _ = store.create(name="a", tier="pro")
    with TestClient(build_app(gateway)) as client:
        assert [_auth(client, key).status_code for _ in range(2)] == [200, 200]
        assert _auth(client, "not-a-key").status_code == 401  # refused without a lookup: on the loop too
        assert client.get("/health").json()["key_cache"] == "live"
    worker = "AnyIO worker thread"
    assert threads[0].startswith(worker) and not threads[1].startswith(worker) and threads[1] == threads[2]
    threads.clear()
    with TestClient(build_app(gateway, inline=False)) as client:
        _auth(client, key)
    assert threads[0].startswith(worker)
