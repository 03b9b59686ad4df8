"""GET /drift/{model} over a real (SQLite) inference log: answers, and errors as problem+json; the drift gauges."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Mount

from kernel.errors import PROBLEM_TYPE_BASE
from services.config import ServingSettings
from services.drift.monitor import DriftMonitor, DriftPolicy
from services.http.app import create_app
from services.http.schemas import DriftResponse
from tests.unit.services.drift.logged import bright, dark, log_rows, save_reference
from tests.unit.services.http.test_caching import FakeModels


@pytest.fixture
def settings(tmp_path: Path) -> ServingSettings:
    return ServingSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        drift_reference_dir=tmp_path / "refs",
        drift_window=50,
        drift_max_window=500,
        drift_min_rows=20,
        drift_permutations=50,
    )


def _client(settings: ServingSettings, plane: Any) -> Iterator[TestClient]:
    app = create_app(settings, backend=lambda: FakeModels(), data_plane=lambda: plane)
    with TestClient(Starlette(routes=[Mount("/api/v1", app=app)]), base_url="http://testserver/api/v1") as client:
        yield client


class _Writer:
    """The route flushes this replica's buffered records before it reads the window (/drift itself is not logged)."""

    def __init__(self) -> None:
        self.flushed = 0

    def flush(self) -> None:
        self.flushed += 1


@pytest.fixture
def writer() -> _Writer:
    return _Writer()


@pytest.fixture
def client(settings: ServingSettings, engine: Engine, writer: _Writer) -> Iterator[TestClient]:
    yield from _client(settings, SimpleNamespace(engine=engine, log_writer=writer))


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_TYPE_BASE + slug and body["status"] == status
    return body


def test_nothing_logged_is_insufficient_data(client: TestClient, writer: _Writer) -> None:
    response = client.get("/drift/classifier")
    assert response.status_code == 200, response.text
    assert writer.flushed == 1
    body = DriftResponse.model_validate(response.json())
    assert (body.model, body.version, body.window, body.n, body.verdict, body.tests) == (
        "classifier",
        None,
        50,
        0,
        "insufficient_data",
        [],
    )
    assert body.checked_at is not None


def test_a_report_has_each_tests_statistic_and_p_value(
    client: TestClient, engine: Engine, settings: ServingSettings
) -> None:
    save_reference(settings.drift_reference_dir, bright(30))
    log_rows(engine, dark(30))
    response = client.get("/drift/classifier", params={"window": 25})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["window"], body["n"], body["verdict"], body["alpha"]) == ("v2", 25, 25, "drift", 0.01)
    assert body["tests"] and all(
        set(t) == {"name", "feature", "statistic", "p_value", "adjusted_p_value", "drift"} for t in body["tests"]
    )


def test_the_reference_traffic_is_no_drift_and_a_pinned_version_is_checked(
    client: TestClient, engine: Engine, settings: ServingSettings
) -> None:
    rows = bright(30)
    save_reference(settings.drift_reference_dir, rows, version="v1")
    log_rows(engine, rows, version="v1")
    log_rows(engine, dark(40), version="v2")  # the most logged version, without a reference
    assert client.get("/drift/classifier", params={"version": "v1"}).json()["verdict"] == "no_drift"
    _problem(client.get("/drift/classifier"), 404, "drift-reference-not-found")


def test_an_unknown_model_is_404(client: TestClient) -> None:
    body = _problem(client.get("/drift/segmenter"), 404, "not-found")
    assert "classifier" in body["detail"]


@pytest.mark.parametrize("window", ["0", "-3", "many", "501"])
def test_a_bad_window_is_422(client: TestClient, window: str) -> None:
    _problem(client.get("/drift/classifier", params={"window": window}), 422, "invalid-parameter")


def test_without_an_inference_log_drift_is_unavailable(settings: ServingSettings) -> None:
    for client in _client(settings, None):
        _problem(client.get("/drift/detector"), 503, "drift-unavailable")


def test_metrics_export_the_latest_stored_check(client: TestClient, engine: Engine, settings: ServingSettings) -> None:
    save_reference(settings.drift_reference_dir, bright(30), model="embedder")
    log_rows(engine, dark(30), model="embedder")
    DriftMonitor(engine, DriftPolicy.from_settings(settings)).check_all()
    text = client.get("/metrics").text
    assert 'cv_drift_detected{model="embedder",test="ks"} 1.0' in text
    assert 'cv_drift_window_rows{model="embedder"} 30.0' in text


def test_metrics_leave_drift_alone_when_it_is_off(engine: Engine, settings: ServingSettings) -> None:
    off = settings.model_copy(update={"drift_enabled": False})
    save_reference(settings.drift_reference_dir, bright(31), model="detector")
    log_rows(engine, dark(31), model="detector")
    DriftMonitor(engine, DriftPolicy.from_settings(settings)).check_all()
    for client in _client(off, SimpleNamespace(engine=engine, log_writer=_Writer())):
        assert 'cv_drift_window_rows{model="detector"} 31.0' not in client.get("/metrics").text
