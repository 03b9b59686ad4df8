"""The periodic drift check in a real `celery worker --beat` (the embedded worker's command) on the local broker,
and with beat in a process of its own (`celery --app services.jobs.celery_beat beat`, the production topology's).

Beat sends ``cv.drift.check`` every second here; the worker runs it over the SQLite inference log and stores each
result in ``drift_check``, which the api exports as gauges when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.applications import Starlette
from starlette.routing import Mount

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.db.tables import DriftCheck
from services.http.app import create_app
from tests.integration.worker import Worker, settings_from, start_beat, start_worker
from tests.unit.services.drift.logged import bright, dark, log_rows, save_reference
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cv.sqlite3'}")  # the worker's: CV_DATA_DIR/cv.sqlite3
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["embedded beat", "beat on its own"])
def worker(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> Iterator[Worker]:
    references = tmp_path / "references"
    save_reference(references, bright(40))
    log_rows(engine, bright(20, start=50) + dark(30))  # the window: the newest 30, all night photos
    env = {
        "CV_DATA_DIR": str(tmp_path),
        "CV_JOBS_BROKER_URL": f"cvsql+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "CV_JOBS_QUEUE": "cvtest-drift",
        "CV_JOBS_POLL_INTERVAL_S": "0.1",
        "CV_JOBS_WORKER_CONCURRENCY": "1",
        "CV_DRIFT_INTERVAL_S": "1",
        "CV_DRIFT_WINDOW": "30",
        "CV_DRIFT_MIN_ROWS": "30",
        "CV_DRIFT_PERMUTATIONS": "100",
        "CV_DRIFT_REFERENCE_DIR": str(references),
    }
    embedded = request.param == "embedded beat"
    running = start_worker(env, tmp_path / "worker.log", "drift", beat=embedded)
    beat = None if embedded else start_beat(env, tmp_path / "beat.log")
    try:
        yield running
    finally:
        running.stop()
        if beat is not None:
            beat.stop()
            assert "Sending due task drift-check (cv.drift.check)" in beat.log(), beat.log()


def _checks(engine: Engine) -> list[DriftCheck]:
    with Session(engine) as session:
        return list(session.exec(select(DriftCheck).order_by(col(DriftCheck.id))))


def test_beat_runs_the_check_periodically_and_the_api_exports_it(
    worker: Worker, engine: Engine, tmp_path: Path
) -> None:
    wait_for(
        lambda: len({c.created_at for c in _checks(engine) if c.model == "classifier"}) >= 2,
        timeout_s=90,
        what="two periodic drift checks of the classifier",
        context=worker.log,
    )
    classifier = [c for c in _checks(engine) if c.model == "classifier"]
    assert {(c.version, c.window, c.n, c.verdict) for c in classifier} == {("v2", 30, 30, "drift")}
    others = {(c.model, c.version, c.n, c.verdict) for c in _checks(engine) if c.model != "classifier"}
    assert others == {("detector", None, 0, "insufficient_data"), ("embedder", None, 0, "insufficient_data")}
    settings = settings_from({"CV_DATA_DIR": str(tmp_path)})
    plane = type("Plane", (), {"engine": engine, "log_writer": None})()
    app = create_app(settings, backend=lambda: None, data_plane=lambda: plane)  # type: ignore[arg-type,return-value]
    with TestClient(Starlette(routes=[Mount("/api/v1", app=app)]), base_url="http://testserver/api/v1") as client:
        metrics = client.get("/metrics").text
    assert 'cv_drift_window_rows{model="classifier"} 30.0' in metrics
    detected = [line for line in metrics.splitlines() if line.startswith('cv_drift_detected{model="classifier"')]
    assert any(line.endswith(" 1.0") for line in detected), detected
