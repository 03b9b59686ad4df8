"""GET /api/v1/drift/{model} on the real server (bentoml serve, model services over bentoml.depends, SQLite log,
the embedded job worker with its beat).

Real photographs (scikit-image's) go through /classify; the test reads the features the server logged, writes a
reference profile of them where CV_DRIFT_REFERENCE_DIR points, and asks for the drift report: the same traffic
again is no drift, the same scenes at night (darkened to a sixth) are drift. The statistics are
services/drift/detect.py's; only clear-cut verdicts and the report's structure are asserted here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLog
from kernel.errors import PROBLEM_TYPE_BASE
from services.drift.features import IMAGE_FEATURES
from services.drift.monitor import latest_features
from services.drift.reference import build_reference, reference_path
from tests.integration.server import Server, start_server
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

WINDOW = 12  # = the photos sent per phase, and the least the check compares (CV_DRIFT_MIN_ROWS)
GAUGES = (
    ("cv_drift_last_check_timestamp_seconds", ""),
    ("cv_drift_window_rows", ""),
    ("cv_drift_detected", ',test="ks"'),
)
TEST_FIELDS = {"name", "feature", "statistic", "p_value", "adjusted_p_value", "drift"}


@dataclass
class DriftServer:
    server: Server
    engine: Engine  # the server's own SQLite inference log, read as it writes it
    references: Path

    def get(self, model: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.server.url}/api/v1/drift/{model}", params=params, timeout=60)

    def post(self, route: str, images: list[bytes]) -> str:
        """Send each image; the version that answered."""
        version = ""
        for data in images:
            response = httpx.post(
                f"{self.server.url}/api/v1{route}", files={"image": ("p.jpg", data, "image/jpeg")}, timeout=60
            )
            assert response.status_code == 200, response.text
            version = response.json()["model"]["version"]
        return version

    def logged(self, model: str) -> int:
        with Session(self.engine) as session:
            with_features = col(InferenceLog.features).is_not(None)
            query = select(func.count()).where(col(InferenceLog.model) == model, with_features)
            return int(session.exec(query).one())

    def wait_logged(self, model: str, count: int) -> None:
        what = f"{count} {model} rows with features"
        wait_for(lambda: self.logged(model) >= count, what=what, context=self.server.log)

    def save_reference(self, model: str, version: str) -> int:
        """A reference of everything ``model`` answered so far; its size."""
        with Session(self.engine) as session:
            rows = [r for _, r in latest_features(session, model=model, window=10_000)]
        build_reference(model, version, rows, source="test").save(reference_path(self.references, model, version))
        return len(rows)


@pytest.fixture(scope="module")
def drift(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftServer]:
    data = tmp_path_factory.mktemp("drift-server")
    references = data / "references"
    references.mkdir()
    env = {
        "BENTOML_HOME": bentoml_home,
        "CV_DATA_DIR": str(data),
        "CV_DRIFT_REFERENCE_DIR": str(references),
        "CV_DRIFT_MIN_ROWS": str(WINDOW),
        "CV_DRIFT_WINDOW": str(WINDOW),
        "CV_DRIFT_MAX_WINDOW": "1000",
        "CV_DRIFT_PERMUTATIONS": "200",
        "CV_LOG_FLUSH_INTERVAL_S": "0.2",
        # make serve's job worker, with its beat sending the periodic check every 2 s.
        "CV_JOBS_EMBEDDED_WORKER": "true",
        "CV_DRIFT_INTERVAL_S": "2",
    }
    server = start_server(data / "server.log", env)
    engine = create_db_engine(f"sqlite:///{data / 'cv.sqlite3'}")
    try:
        yield DriftServer(server, engine, references)
    finally:
        engine.dispose()
        server.stop()


def _crops(photos: dict[str, bytes], *, dim: float = 1.0) -> list[bytes]:
    """Three crops of each photograph (12 different images), scaled by ``dim`` (1/6: the same scenes at night)."""
    images = []
    for name in sorted(photos):
        pixels = np.asarray(Image.open(io.BytesIO(photos[name])).convert("RGB"))
        height, width = pixels.shape[:2]
        for i in range(3):
            top, left = i * height // 10, i * width // 10
            crop = pixels[top : top + height * 2 // 3, left : left + width * 2 // 3]
            buffer = io.BytesIO()
            Image.fromarray((crop * dim).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
            images.append(buffer.getvalue())
    return images


def _problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM_TYPE_BASE + slug


def _report(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"model", "version", "window", "n", "verdict", "alpha", "tests", "checked_at"}
    return body


def test_drift_of_real_photos_through_the_real_server(drift: DriftServer, photos: dict[str, bytes]) -> None:
    # Nothing logged: not enough data, and no version to name.
    empty = _report(drift.get("classifier"))
    assert (empty["version"], empty["n"], empty["verdict"], empty["tests"]) == (None, 0, "insufficient_data", [])
    _problem(drift.get("segmenter"), 404, "not-found")
    _problem(drift.get("classifier", window=0), 422, "invalid-parameter")
    _problem(drift.get("classifier", window=1001), 422, "invalid-parameter")

    daylight = _crops(photos)
    assert len(daylight) == WINDOW
    version = drift.post("/classify", daylight[:3])
    drift.wait_logged("classifier", 3)
    _problem(drift.get("classifier"), 404, "drift-reference-not-found")  # logged, but version has no reference
    assert drift.save_reference("classifier", version) == 3
    few = _report(drift.get("classifier"))
    assert (few["version"], few["n"], few["window"], few["verdict"]) == (version, 3, WINDOW, "insufficient_data")

    drift.post("/classify", daylight[3:])
    drift.wait_logged("classifier", WINDOW)
    assert drift.save_reference("classifier", version) == WINDOW  # the reference: exactly this traffic
    same = _report(drift.get("classifier"))
    assert (same["version"], same["n"], same["verdict"]) == (version, WINDOW, "no_drift")
    assert same["tests"] and all(set(t) == TEST_FIELDS and not t["drift"] for t in same["tests"])
    assert {t["feature"] for t in same["tests"]} <= {*IMAGE_FEATURES, "confidence", "labels", "sketch"}

    drift.post("/classify", _crops(photos, dim=1 / 6))
    drift.wait_logged("classifier", 2 * WINDOW)
    night = _report(drift.get("classifier"))
    assert (night["n"], night["verdict"]) == (WINDOW, "drift")
    brightness = [t for t in night["tests"] if t["feature"] == "brightness"]
    assert brightness and all(t["drift"] for t in brightness)
    both = _report(drift.get("classifier", window=2 * WINDOW))  # a wider window reaches back to the daylight
    assert (both["window"], both["n"]) == (2 * WINDOW, 2 * WINDOW)


def test_the_detector_and_the_search_log_features_too(drift: DriftServer, photos: dict[str, bytes]) -> None:
    image = _crops(photos)[:1]
    drift.post("/detect", image)
    drift.post("/search", image)
    for model in ("detector", "embedder"):
        drift.wait_logged(model, 1)
        with Session(drift.engine) as session:
            ((_, features),) = latest_features(session, model=model, window=1)
        assert set(features) == {"image", "label", "confidence", "sketch"}
        assert set(features["image"]) == set(IMAGE_FEATURES)
        _problem(drift.get(model), 404, "drift-reference-not-found")


def test_the_periodic_check_of_the_embedded_worker_is_on_metrics(drift: DriftServer) -> None:
    def exported() -> bool:
        text = httpx.get(f"{drift.server.url}/api/v1/metrics", timeout=30).text
        # The classifier's (the detector and embedder have no reference here: skipped, so not exported).
        return all(f'{name}{{model="classifier"{extra}}}' in text for name, extra in GAUGES)

    wait_for(exported, timeout_s=120, interval_s=1, what="the drift gauges on /metrics", context=drift.server.log)
