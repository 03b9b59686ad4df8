"""Shadow traffic in the real `bentoml serve`: classifier v1 in stage shadow beside the production release.

The server's model store holds classifier SERVED (production) and v1 imported with ``--stage shadow`` by the project's
own import script, next to the test store's detector and embedder. Its inference log is a PostgreSQL schema of
its own. Answers must name SERVED and equal those of a request pinned to it (which is never mirrored); v1's answers
must land in the log as shadow rows of the same request ids, and its agreement on ``/metrics``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLog
from services.config import ServingSettings
from services.models.specs.lite0 import SERVED
from services.shadow.report import shadow_agreement
from tests.integration.conftest import fresh_schema, postgres_url
from tests.integration.server import Server, start_server
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PRODUCTION, SHADOW = SERVED, "v1"


@dataclass
class ShadowStack:
    server: Server
    db: Engine


def shadow_store(shared_home: Path, home: Path) -> Path:
    """A BentoML home with the shared detector and embedder, and classifier SERVED (production) and v1 (shadow)."""
    models = home / "models"
    models.mkdir(parents=True)
    for name in ("detector", "embedder"):
        (models / name).symlink_to(shared_home / "models" / name, target_is_directory=True)
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)}
    script = str(REPO / "bentos" / "classifier" / "import_model.py")
    for version, stage in ((PRODUCTION, "production"), (SHADOW, "shadow")):
        done = subprocess.run(
            [sys.executable, script, "--version", version, "--stage", stage],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return home


@pytest.fixture(scope="module")
def stack(
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShadowStack]:
    data = tmp_path_factory.mktemp("shadow-server")
    home = shadow_store(Path(bentoml_home), data / "bentoml")
    with fresh_schema() as schema:
        url = postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0])
        env = {
            "BENTOML_HOME": str(home),
            "CV_DATA_DIR": str(data),
            "CV_DATABASE_URL": url,  # migrated by the api at start-up (local mode)
            "CV_CACHE_ENABLED": "true",  # a cache hit is mirrored too
            "CV_SHADOW_REFRESH_S": "0.5",
            "CV_LOG_FLUSH_INTERVAL_S": "0.2",
        }
        server = start_server(data / "server.log", env)
        db = create_db_engine(ServingSettings(_env_file=None, database_url=url).sqlalchemy_url)  # type: ignore[call-arg]
        try:
            yield ShadowStack(server, db)
        finally:
            server.stop()
            db.dispose()


def rows(stack: ShadowStack, prefix: str) -> list[InferenceLog]:
    with Session(stack.db) as session:
        query = select(InferenceLog).where(col(InferenceLog.request_id).startswith(prefix))
        return list(session.exec(query.order_by(col(InferenceLog.id))))


def classify(stack: ShadowStack, image: bytes, request_id: str, **data: str) -> httpx.Response:
    return httpx.post(
        f"{stack.server.url}/api/v1/classify",
        files={"image": ("image.jpg", image, "image/jpeg")},
        data=data,
        headers={"X-Request-ID": request_id},
        timeout=60,
    )


def shadow_learnt(stack: ShadowStack, image: bytes) -> None:
    """Send requests until one is mirrored: the api reads the stages from the model services' status."""
    sent: list[str] = []

    def mirrored() -> bool:
        sent.append(f"warmup-{len(sent)}")
        assert classify(stack, image, sent[-1]).status_code == 200
        return any(r.shadow for r in rows(stack, "warmup-"))

    wait_for(mirrored, 120, what="a first shadow row", interval_s=1.0, context=lambda: stack.server.log()[-3000:])


def metric(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return float(found.value)
    return 0.0


def test_shadow_answers_are_logged_and_measured_never_returned(stack: ShadowStack, photos: dict[str, bytes]) -> None:
    shadow_learnt(stack, photos["coffee.jpg"])
    answers: dict[str, dict[str, Any]] = {}
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "chelsea.jpg"):  # the second chelsea: a cache hit
        request_id = f"shadow-{len(answers)}"
        response = classify(stack, photos[name], request_id)
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == f"classifier:{PRODUCTION}"
        pinned = classify(stack, photos[name], f"pinned-{len(answers)}", version=PRODUCTION)  # not mirrored
        assert response.json()["predictions"] == pinned.json()["predictions"]
        answers[request_id] = response.json()
    assert answers["shadow-3"]["cached"] is True

    wait_for(lambda: sum(r.shadow for r in rows(stack, "shadow-")) == 4, 60, what="4 shadow rows")
    found = {(r.request_id, r.shadow): r for r in rows(stack, "shadow-")}
    for request_id, body in answers.items():
        production, shadow = found[(request_id, False)], found[(request_id, True)]
        assert (production.version, shadow.version, shadow.model) == (PRODUCTION, SHADOW, "classifier")
        assert production.top_label == body["predictions"][0]["label"]
        assert shadow.status == 200 and shadow.item_index == production.item_index == 0
        assert shadow.image_sha256 == production.image_sha256 == body["image"]["sha256"]
        assert shadow.agreement == (1.0 if shadow.top_label == production.top_label else 0.0)
    assert not any(r.shadow for r in rows(stack, "pinned-"))

    metrics = httpx.get(f"{stack.server.url}/api/v1/metrics", timeout=10).text
    labels = {"model": "classifier", "version": SHADOW}
    assert metric(metrics, "cv_shadow_agreement_count", labels) >= 5  # the warm-up's too
    assert metric(metrics, "cv_shadow_requests_total", {**labels, "outcome": "compared"}) >= 5
    assert metric(metrics, "cv_shadow_dropped_total", {"model": "classifier"}) == 0

    report = shadow_agreement(stack.db, model="classifier", version=SHADOW)
    assert report["items"] >= 5 and report["paired"] == report["items"] and report["errors"] == 0
    assert report["agreement"] == pytest.approx(report["top_label_agreement"])


def test_a_batch_is_mirrored_item_by_item(stack: ShadowStack, photos: dict[str, bytes]) -> None:
    shadow_learnt(stack, photos["coffee.jpg"])
    files = [("images", (n, photos[n], "image/jpeg")) for n in ("rocket.jpg", "coffee.jpg")]
    response = httpx.post(
        f"{stack.server.url}/api/v1/batch",
        files=files,
        data={"task": "classify"},
        headers={"X-Request-ID": "batch-1"},
        timeout=60,
    )
    assert response.status_code == 200 and response.json()["succeeded"] == 2
    assert {item["result"]["model"]["version"] for item in response.json()["items"]} == {PRODUCTION}
    wait_for(lambda: sum(r.shadow for r in rows(stack, "batch-")) == 2, 60, what="2 shadow rows")
    shadows = [r for r in rows(stack, "batch-") if r.shadow]
    assert sorted(r.item_index for r in shadows) == [0, 1] and {r.route for r in shadows} == {"/api/v1/batch"}
