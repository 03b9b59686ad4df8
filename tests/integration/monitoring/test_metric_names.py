"""Every metric a dashboard or an alert rule reads is one the services really export: taken from a live scrape.

The api runs in process over the real models with its data plane, the in-process gateway and a job queue whose
chunks the real ChunkProcessor answers (tests/integration/http/apps.py); after a few requests of each kind its
``GET /api/v1/metrics`` is read, and so is the auth service's ``GET /metrics``. In process, the model metrics
(``cv_inference_*``) land in the same registry the api renders; deployed, the model services' ``/metrics`` show them.
Traefik is not started here: its names are the short declared list below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from gateway.app import Gateway, build_app
from gateway.config import GatewaySettings
from gateway.keys import KeyStore
from gateway.limiter import MemoryLimiter
from gateway.tiers import Tiers
from services.clients.inprocess import InProcessClient
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from tests.integration.http.apps import job_app
from tests.unit.monitoring.queries import DASHBOARDS, dashboard_queries, metric_names, rule_queries

pytestmark = pytest.mark.integration

# What Traefik v3 exports with `metrics.prometheus` and entry point, router and service labels
# (gateway/traefik/traefik.yml): only those the dashboards use or the runbook names. Declared, not scraped:
# starting Traefik here is heavy, and tests/e2e runs it.
TRAEFIK = {
    "traefik_service_requests_total",
    "traefik_service_request_duration_seconds_bucket",
    "traefik_service_request_duration_seconds_sum",
    "traefik_service_request_duration_seconds_count",
    "traefik_service_server_up",
    "traefik_entrypoint_requests_total",
    "traefik_router_requests_total",
    "traefik_open_connections",
}
PROMETHEUS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}  # what Prometheus adds to every target

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported_names(text: str) -> set[str]:
    """The series names an exposition yields, those of metrics with no sample yet included (their HELP/TYPE)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def backend(model_store: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedClient]:
    settings = get_settings().model_copy(update={"data_dir": tmp_path_factory.mktemp("data")})
    yield ThreadedClient(InProcessClient(settings))


def _api_scrape(backend: ThreadedClient, tmp_path: Path, photos: dict[str, bytes]) -> str:
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "jobs_chunk_size": 2})
    with job_app(backend, settings) as app:
        image = ("image", ("c.jpg", photos["chelsea.jpg"], "image/jpeg"))
        for route in ("/classify", "/detect", "/search"):
            app.client.post(route, files=[image])
        app.client.post("/classify", files=[image])  # a cache hit
        app.client.post("/classify", files=[("image", ("x.jpg", b"not an image", "image/jpeg"))])  # a problem
        files = [("images", (f"{i}.jpg", photos["coffee.jpg"], "image/jpeg")) for i in range(3)]
        job = app.client.post("/batch", files=files, data={"task": "detect", "mode": "job"})
        assert job.status_code == 202, job.text
        app.dispatcher.run()
        assert app.client.get(f"/jobs/{job.json()['id']}").json()["status"] == "succeeded"
        response = app.client.get("/metrics")
        assert response.status_code == 200
        return response.text


def _gateway_scrape(engine: Engine) -> str:
    store = KeyStore(engine, hash_key=b"metric-names")
    tiers = Tiers.from_file(GatewaySettings(_env_file=None).tiers_file)  # type: ignore[call-arg]
    client = TestClient(build_app(Gateway(keys=store, tiers=tiers, limiter=MemoryLimiter(), fail_open=False)))
    key, _ = store.create(name="scrape", tier=tiers.names[0])
    for headers in ({"Authorization": f"Bearer {key}"}, {}):
        client.get("/auth", headers={"X-Forwarded-Uri": "/api/v1/classify", **headers})
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.fixture(scope="module")
def exported(backend: ThreadedClient, tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> set[str]:
    from kernel.db import migrate
    from kernel.db.session import create_db_engine

    api = exported_names(_api_scrape(backend, tmp_path_factory.mktemp("api"), photos))
    engine = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('gw') / 'cv.sqlite3'}")
    migrate.upgrade(engine)
    gateway = exported_names(_gateway_scrape(engine))
    assert "cv_http_requests_total" in api and "cv_inference_batch_size_bucket" in api
    assert "cv_gateway_decisions_total" in gateway
    return api | gateway | TRAEFIK | PROMETHEUS


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_dashboard_query_reads_exported_metrics(path: Path, exported: set[str]) -> None:
    missing = {f"{title}: {name}" for title, expr in dashboard_queries(path) for name in metric_names(expr) - exported}
    assert missing == set()


def test_every_alert_rule_reads_exported_metrics(exported: set[str]) -> None:
    missing = {f"{alert}: {name}" for alert, expr in rule_queries() for name in metric_names(expr) - exported}
    assert missing == set()


def test_the_check_would_see_a_misspelt_metric(exported: set[str]) -> None:
    assert metric_names("rate(cv_http_request_total[5m])") - exported == {"cv_http_request_total"}
