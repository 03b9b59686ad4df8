"""What the api does with the gateway's headers: the tier's input limits, RateLimit-* back to the caller, log lines.

All of it only when the headers can be trusted (CV_TRUST_GATEWAY_HEADERS behind Traefik, or the in-process
gateway); otherwise a caller could raise its own limits or speak for another client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from kernel.signing import sign
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from services.http.app import create_app
from services.http.deps import Limits
from tests.conftest import encode

pytestmark = pytest.mark.integration

TIER = {"X-Client-Id": "acme", "X-Tier": "free", "X-Tier-Max-Batch": "2", "X-Tier-Max-Image-Bytes": "2000"}


def _client(backend: ThreadedClient, tmp_path: Path, *, trusted: bool) -> TestClient:
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "trust_gateway_headers": trusted})
    app = create_app(settings, backend=lambda: backend)
    parent = Starlette(routes=[Mount("/api/v1", app=app)])
    return TestClient(parent, base_url="http://testserver/api/v1", raise_server_exceptions=False)


@pytest.fixture
def trusted(backend: ThreadedClient, tmp_path: Path) -> Iterator[TestClient]:
    with _client(backend, tmp_path, trusted=True) as client:
        yield client


@pytest.fixture
def untrusted(backend: ThreadedClient, tmp_path: Path) -> Iterator[TestClient]:
    with _client(backend, tmp_path, trusted=False) as client:
        yield client


def _big_png() -> bytes:
    image = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
    assert len(image) > 2000
    return image


def test_the_tiers_image_limit_applies_behind_the_gateway(trusted: TestClient, untrusted: TestClient) -> None:
    files = {"image": ("x.png", _big_png(), "image/png")}
    refused = trusted.post("/classify", files=files, headers=TIER)
    assert refused.status_code == 413 and "2000 bytes" in refused.json()["detail"]
    assert (
        trusted.post("/classify", files=files, headers={**TIER, "X-Tier-Max-Image-Bytes": "999999"}).status_code == 200
    )
    # A caller's own header is ignored when nothing vouches for it.
    assert untrusted.post("/classify", files=files, headers=TIER).status_code == 200


def test_the_tiers_batch_limit_applies_to_inline_batches(trusted: TestClient, untrusted: TestClient) -> None:
    image = encode(np.zeros((32, 32, 3), dtype=np.uint8))
    files = [("images", (f"{i}.jpg", image, "image/jpeg")) for i in range(3)]
    refused = trusted.post("/batch", files=files, data={"task": "classify", "mode": "inline"}, headers=TIER)
    assert refused.status_code == 413 and "at most 2" in refused.json()["detail"]
    answered = untrusted.post("/batch", files=files, data={"task": "classify", "mode": "inline"}, headers=TIER)
    assert answered.status_code == 200 and answered.json()["count"] == 3


def test_rate_limit_headers_go_back_to_the_caller_only_when_trusted(trusted: TestClient, untrusted: TestClient) -> None:
    rate = {"RateLimit-Limit": "5", "RateLimit-Remaining": "3", "RateLimit-Reset": "1"}
    response = trusted.get("/models", headers=rate)
    assert {k: response.headers.get(k) for k in rate} == rate
    assert "RateLimit-Limit" not in untrusted.get("/models", headers=rate).headers


def test_the_access_log_line_names_the_client_and_tier(trusted: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="services.http"):
        trusted.get("/models", headers={**TIER, "X-Request-ID": "req-42"})
    (line,) = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "route", "") == "/api/v1/models"]
    assert (line.client_id, line.tier) == ("acme", "free")  # type: ignore[attr-defined]
    from kernel.logging import JsonFormatter

    assert json.loads(JsonFormatter().format(line))["client_id"] == "acme"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (100, 10)),
        ({"x-tier-max-image-bytes": "50", "x-tier-max-batch": "4"}, (50, 4)),
        ({"x-tier-max-image-bytes": "500", "x-tier-max-batch": "40"}, (100, 10)),  # never above the server's
        ({"x-tier-max-image-bytes": "-1", "x-tier-max-batch": "lots"}, (100, 10)),  # nonsense is ignored
    ],
)
def test_limits_arithmetic(headers: dict[str, str], expected: tuple[int, int]) -> None:
    settings = get_settings().model_copy(
        update={"max_image_bytes": 100, "max_batch_items": 10, "trust_gateway_headers": True}
    )
    limits = Limits.of(settings, headers)
    assert (limits.max_image_bytes, limits.max_batch_items) == expected
    assert limits.max_image_pixels == settings.max_image_pixels


SIGNING_SECRET = "a-signing-secret-of-the-gateway"


@pytest.fixture
def signed(backend: ThreadedClient, tmp_path: Path) -> Iterator[TestClient]:
    settings = get_settings().model_copy(
        update={
            "data_dir": tmp_path,
            "trust_gateway_headers": True,
            "gateway_signing_secret": SecretStr(SIGNING_SECRET),
        }
    )
    parent = Starlette(routes=[Mount("/api/v1", app=create_app(settings, backend=lambda: backend))])
    with TestClient(parent, base_url="http://testserver/api/v1", raise_server_exceptions=False) as client:
        yield client


def _signature(method: str, uri: str, request_id: str, tier: dict[str, str] = TIER) -> dict[str, str]:
    identity = {name.lower(): value for name, value in tier.items()}
    value = sign(SIGNING_SECRET, method=method, uri=uri, request_id=request_id, headers=identity)
    return {**tier, "X-Request-ID": request_id, "X-Gateway-Signature": value}


def test_with_a_signing_secret_protected_routes_need_the_gateways_signature(
    signed: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"image": ("x.png", encode(np.zeros((8, 8, 3), np.uint8), "PNG"), "image/png")}
    # Someone who reaches the replica without Traefik: identity headers alone are not enough.
    with caplog.at_level(logging.INFO, logger="services.http"):
        forged = signed.post("/classify?top_k=1", files=files, headers={**TIER, "X-Request-ID": "forged-1"})
    assert forged.status_code == 401 and forged.json()["type"].endswith("gateway-signature-invalid")
    assert forged.headers["content-type"] == "application/problem+json"
    line = next(r for r in caplog.records if r.getMessage() == "request")
    assert getattr(line, "client_id", None) is None  # an unverified claim is not logged as the client
    # Signed for another tier, another route or another request: refused too.
    for headers in (
        {**_signature("POST", "/api/v1/classify?top_k=1", "r-2"), "X-Tier": "enterprise"},
        _signature("POST", "/api/v1/detect", "r-3"),
        {**_signature("POST", "/api/v1/classify?top_k=1", "r-4"), "X-Request-ID": "r-5"},
    ):
        assert signed.post("/classify?top_k=1", files=files, headers=headers).status_code == 401
    # What the gateway signed goes through, with the tier's limits and RateLimit-* as before.
    ok = signed.post("/classify?top_k=1", files=files, headers=_signature("POST", "/api/v1/classify?top_k=1", "r-6"))
    assert ok.status_code == 200, ok.text
    # The load balancer's health check, Prometheus and the spec reach the replica without the gateway.
    for path in ("/health", "/metrics", "/openapi.json"):
        assert signed.get(path).status_code == 200, path
