"""The auth service's /metrics: decisions by tier and outcome, the limiter's store up or down."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from gateway.app import Gateway, build_app
from gateway.keys import KeyStore
from gateway.tiers import Tiers
from tests.unit.gateway.test_app import FakeLimiter, _auth


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _client(store: KeyStore, tiers: Tiers, limiter: FakeLimiter, *, fail_open: bool = False) -> TestClient:
    return TestClient(build_app(Gateway(keys=store, tiers=tiers, limiter=limiter, fail_open=fail_open)))


def test_decisions_are_counted_by_tier_and_outcome(store: KeyStore, tiers: Tiers) -> None:
    pro, _ = store.create(name="a", tier="pro")
    free, _ = store.create(name="b", tier="free")
    client = _client(store, tiers, FakeLimiter(allow=1))
    before = {
        ("pro", "allowed"): _value("cv_gateway_decisions_total", tier="pro", decision="allowed"),
        ("pro", "rate-limited"): _value("cv_gateway_decisions_total", tier="pro", decision="rate-limited"),
        ("free", "forbidden"): _value("cv_gateway_decisions_total", tier="free", decision="forbidden"),
        ("none", "unauthenticated"): _value("cv_gateway_decisions_total", tier="none", decision="unauthenticated"),
    }
    assert _auth(client, pro).status_code == 200
    assert _auth(client, pro).status_code == 429
    assert _auth(client, free, uri="/api/v1/detect").status_code == 403
    assert _auth(client, None).status_code == 401
    assert _auth(client, "not-a-key").status_code == 401
    expected = {
        ("pro", "allowed"): 1,
        ("pro", "rate-limited"): 1,
        ("free", "forbidden"): 1,
        ("none", "unauthenticated"): 2,
    }
    for (tier, decision), added in expected.items():
        now = _value("cv_gateway_decisions_total", tier=tier, decision=decision)
        assert now - before[(tier, decision)] == added, (tier, decision)


def test_refusal_body_does_not_carry_the_metric_label(store: KeyStore, tiers: Tiers) -> None:
    free, _ = store.create(name="b", tier="free")
    body = _auth(_client(store, tiers, FakeLimiter()), free, uri="/api/v1/detect").json()
    assert "tier" not in body


def test_limiter_down_sets_the_gauge_and_counts_errors_by_fail_mode(store: KeyStore, tiers: Tiers) -> None:
    key, _ = store.create(name="a", tier="pro")
    limiter = FakeLimiter()
    client = _client(store, tiers, limiter)
    assert _auth(client, key).status_code == 200
    assert _value("cv_gateway_limiter_up", backend="redis") == 1
    closed = _value("cv_gateway_limiter_errors_total", fail_mode="closed")
    unavailable = _value("cv_gateway_decisions_total", tier="pro", decision="rate-limiter-unavailable")
    limiter.down = True
    assert _auth(client, key).status_code == 503
    assert _value("cv_gateway_limiter_up", backend="redis") == 0
    assert _value("cv_gateway_limiter_errors_total", fail_mode="closed") == closed + 1
    assert _value("cv_gateway_decisions_total", tier="pro", decision="rate-limiter-unavailable") == unavailable + 1
    limiter.down = False
    assert _auth(client, key).status_code == 200
    assert _value("cv_gateway_limiter_up", backend="redis") == 1


def test_metrics_endpoint_pings_the_store_and_exposes_every_gateway_metric(store: KeyStore, tiers: Tiers) -> None:
    limiter = FakeLimiter()
    limiter.down = True  # no request since: only the scrape's ping can tell
    response = _client(store, tiers, limiter).get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cv_gateway_limiter_up{backend="redis"} 0.0' in text
    for name in ("cv_gateway_decisions_total", "cv_gateway_limiter_errors_total"):
        assert f"# TYPE {name} counter" in text
