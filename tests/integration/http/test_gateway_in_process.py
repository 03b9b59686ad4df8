"""Local mode without Traefik: the gateway's policy in the api process (CV_AUTH_IN_PROCESS), one implementation.

The api app over the real models, with the real key store (SQLite) and the gateway's own decision code;
only the limiter is a fake here (tests/integration/gateway/test_limiter_redis.py runs the real one on Redis).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.app import Gateway
from gateway.keys import KeyStore
from gateway.tiers import Tiers
from kernel.asgi import full_path
from kernel.errors import PROBLEM_CONTENT_TYPE
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from tests.conftest import encode
from tests.integration.http.apps import data_plane_client, logged_rows
from tests.unit.gateway.conftest import make_tier
from tests.unit.gateway.test_app import FakeLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(engine: Engine) -> KeyStore:
    return KeyStore(engine, hash_key=b"k")


@pytest.fixture
def limiter() -> FakeLimiter:
    return FakeLimiter(allow=3)


@pytest.fixture
def client(backend: ThreadedClient, keys: KeyStore, limiter: FakeLimiter, tmp_path: Path) -> Iterator[TestClient]:
    tiers = Tiers(
        {
            "pro": make_tier(burst=3, max_image_bytes=10_000_000),
            "free": make_tier(routes=["/api/v1/models"], max_image_bytes=10_000_000),
        }
    )
    gateway = Gateway(keys=keys, tiers=tiers, limiter=limiter, fail_open=False)
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "auth_in_process": True})
    from gateway.inprocess import install_gateway
    from services.http.app import IN_PROCESS_PUBLIC_PATHS, create_app

    app = create_app(settings, backend=lambda: backend)
    install_gateway(app, lambda: gateway, IN_PROCESS_PUBLIC_PATHS)
    parent = Starlette(routes=[Mount("/api/v1", app=app)])
    with TestClient(parent, base_url="http://testserver/api/v1", raise_server_exceptions=False) as test_client:
        yield test_client


def _image() -> dict[str, tuple[str, bytes, str]]:
    import numpy as np

    return {"image": ("x.jpg", encode(np.zeros((32, 32, 3), dtype=np.uint8)), "image/jpeg")}


def test_no_key_is_401_problem(client: TestClient) -> None:
    response = client.post("/classify", files=_image())
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["instance"] == "/api/v1/classify"


def test_a_key_passes_with_rate_headers_and_the_gateways_identity(client: TestClient, keys: KeyStore) -> None:
    key, _record = keys.create(name="a", tier="pro")
    response = client.post(
        "/classify",
        files=_image(),
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "in-proc-1", "X-Client-Id": "someone-else"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["RateLimit-Limit"] == "3" and response.headers["RateLimit-Remaining"] == "2"
    assert response.headers["X-Request-ID"] == "in-proc-1" == response.json()["request_id"]


def test_the_gateways_client_id_replaces_the_callers_in_the_inference_log(
    backend: ThreadedClient, keys: KeyStore, limiter: FakeLimiter, tmp_path: Path
) -> None:
    gateway = Gateway(
        keys=keys, tiers=Tiers({"pro": make_tier(max_image_bytes=10**7)}), limiter=limiter, fail_open=False
    )
    key, record = keys.create(name="a", tier="pro")
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "auth_in_process": True})
    with data_plane_client(backend, settings, gateway=lambda: gateway) as (client, plane):
        headers = {"X-API-Key": key, "X-Request-ID": "log-1", "X-Client-Id": "forged", "X-Tier": "enterprise"}
        assert client.post("/classify", files=_image(), headers=headers).status_code == 200
        (row,) = logged_rows(plane, "log-1")
        assert (row.client_id, row.tier) == (record.prefix, "pro")


def test_revoked_key_and_tier_routes_are_403(client: TestClient, keys: KeyStore) -> None:
    revoked, record = keys.create(name="r", tier="pro")
    keys.revoke(prefix=record.prefix)
    assert client.get("/models", headers={"Authorization": f"Bearer {revoked}"}).status_code == 403
    free, _ = keys.create(name="f", tier="free")
    assert client.get("/models", headers={"Authorization": f"Bearer {free}"}).status_code == 200
    assert client.post("/classify", files=_image(), headers={"Authorization": f"Bearer {free}"}).status_code == 403


def test_over_the_limit_is_429_with_retry_after(client: TestClient, keys: KeyStore) -> None:
    key, _ = keys.create(name="a", tier="pro")
    statuses = [client.get("/models", headers={"X-API-Key": key}) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].headers["Retry-After"] == "2"


def test_the_spec_and_metrics_stay_public(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/health").status_code == 401


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/api/v1/classify", "root_path": "/api/v1"}, "/api/v1/classify"),
        ({"path": "/classify", "root_path": "/api/v1"}, "/api/v1/classify"),
        ({"path": "/classify"}, "/classify"),
    ],
)
def test_full_path_inside_a_mount(scope: dict[str, str], expected: str) -> None:
    assert full_path(scope) == expected


def test_the_api_processes_gateway_keeps_keys_in_the_apis_database(tmp_path: Path) -> None:
    from gateway.config import GatewaySettings
    from gateway.inprocess import in_process_gateway
    from gateway.limiter import MemoryLimiter
    from kernel.db import migrate

    api = get_settings().model_copy(update={"data_dir": tmp_path})
    gateway = in_process_gateway(api.database_url, api.data_dir, GatewaySettings(_env_file=None))  # type: ignore[call-arg]
    migrate.upgrade(gateway.keys._engine)
    gateway.keys.create(name="a", tier="free")
    assert (tmp_path / "cv.sqlite3").is_file()  # the api's own SQLite file, not the gateway's default
    assert isinstance(gateway.limiter, MemoryLimiter) and gateway.tiers.names == ["free", "pro", "enterprise"]
