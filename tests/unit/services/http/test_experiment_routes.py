"""Experiments over the app: arms chosen per client, experiment/arm in answers and logs, the routes, feedback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session
from starlette.requests import Request

from kernel.db.tables import ExperimentStatus
from services.config import ServingSettings
from services.db.logs import list_inference_logs
from services.experiments.store import feedback_counts, set_status
from services.http.app import create_app
from services.http.context import RequestContext, bind_context, reset_context
from services.http.dataplane import DataPlane
from services.http.experiments import client_id
from tests.unit.services.experiments.helpers import new_experiment
from tests.unit.services.http.test_caching import FakeModels


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DataPlane]:
    settings = ServingSettings(_env_file=None, data_dir=tmp_path, cache_enabled=False)  # type: ignore[call-arg]
    data_plane = DataPlane.from_settings(settings)
    yield data_plane
    asyncio.run(data_plane.close())


@pytest.fixture
def client(plane: DataPlane) -> TestClient:
    models = plane.wrap(FakeModels())
    return TestClient(create_app(plane.settings, backend=lambda: models, data_plane=lambda: plane))


@pytest.fixture
def experiment(plane: DataPlane) -> str:
    new_experiment(plane.engine, "ab1")
    plane.experiments.refresh()
    return "ab1"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def classify(client: TestClient, headers: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    response = client.post("/classify", files={"image": ("x.png", png(), "image/png")}, data=data, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_client_keeps_its_arm_and_gets_its_version(client: TestClient, plane: DataPlane, experiment: str) -> None:
    bodies = [classify(client, {"X-Client-Id": "alice"}) for _ in range(5)]
    arms = {(b["experiment"], b["arm"], b["model"]["version"]) for b in bodies}
    assert len(arms) == 1
    ((name, arm, version),) = arms
    assert name == "ab1" and version == {"control": "v1", "candidate": "v2"}[arm]
    spread = {classify(client, {"X-Client-Id": f"client-{i}"})["arm"] for i in range(40)}
    assert spread == {"control", "candidate"}
    plane.log_writer.flush()
    with Session(plane.engine) as session:
        rows = list_inference_logs(session=session, request_id=bodies[0]["request_id"])
    assert [(r.experiment, r.arm, r.version) for r in rows] == [("ab1", arm, version)]


def test_a_pinned_version_bypasses_the_experiment(client: TestClient, experiment: str) -> None:
    body = classify(client, {"X-Client-Id": "alice"}, version="v2")
    assert (body["experiment"], body["arm"], body["model"]["version"]) == (None, None, "v2")


def test_batches_and_paused_experiments_assign_nobody(client: TestClient, plane: DataPlane, experiment: str) -> None:
    files = [("images", ("x.png", png(), "image/png"))]
    batch = client.post("/batch", files=files, data={"task": "classify"}, headers={"X-Client-Id": "a"}).json()
    assert (batch["items"][0]["result"]["experiment"], batch["items"][0]["result"]["arm"]) == (None, None)
    with Session(plane.engine) as session:
        set_status(session=session, experiment_id=experiment, status=ExperimentStatus.PAUSED)
        session.commit()
    plane.experiments.refresh()
    body = classify(client, {"X-Client-Id": "alice"})
    assert (body["experiment"], body["arm"], body["model"]["version"]) == (None, None, "v1")  # the default


def test_the_client_id_comes_from_the_gateway_then_the_header_in_local_mode_then_the_request_id() -> None:
    local = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    production = local.model_copy(update={"environment": "production"})
    request = Request({"type": "http", "headers": [(b"x-client-id", b"own")]})
    token = bind_context(RequestContext(request_id="req-1"))
    try:
        assert client_id(local, request) == "own"
        assert client_id(production, request) == "req-1"
        assert client_id(local.model_copy(update={"trust_gateway_headers": True}), request) == "req-1"
    finally:
        reset_context(token)
    token = bind_context(RequestContext(request_id="req-1", client_id="key-42"))
    try:
        assert client_id(local, request) == "key-42"
    finally:
        reset_context(token)


def test_experiments_are_listed_and_analysed(client: TestClient, experiment: str) -> None:
    body = classify(client, {"X-Client-Id": "alice"})
    listed = client.get("/experiments").json()["experiments"]
    assert [(e["id"], e["status"], e["running"]) for e in listed] == [("ab1", "active", True)]
    assert [a["name"] for a in listed[0]["arms"]] == ["control", "candidate"]
    one = client.get(f"/experiments/{experiment}")
    assert one.status_code == 200
    assert one.json()["id"] == "ab1" and f'"{body["arm"]}"' in one.text


def test_an_unknown_experiment_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/experiments/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "nope" in response.json()["detail"]


def test_feedback_by_label_and_by_thumbs_is_stored_against_the_answer(
    client: TestClient, plane: DataPlane, experiment: str
) -> None:
    body = classify(client, {"X-Client-Id": "alice"})
    request_id, answered = body["request_id"], body["predictions"][0]["label"]
    right = client.post("/feedback", json={"request_id": request_id, "label": answered.upper()})
    assert right.status_code == 201, right.text
    assert right.json() == {
        "request_id": request_id,
        "item_index": 0,
        "label": answered.upper(),
        "correct": True,
        "answered_label": answered,
        "model": "classifier",
        "version": body["model"]["version"],
        "experiment": "ab1",
        "arm": body["arm"],
    }
    wrong = client.post("/feedback", json={"request_id": request_id, "label": "ostrich"})
    assert wrong.json()["correct"] is False
    thumbs_up = client.post("/feedback", json={"request_id": request_id, "correct": True})
    assert thumbs_up.status_code == 201 and thumbs_up.json()["label"] is None
    with Session(plane.engine) as session:  # a repeat replaces: one verdict on one answer, the last
        assert feedback_counts(session=session, experiment_id=experiment) == {body["arm"]: (1, 1)}


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "r1"},
        {"request_id": "r1", "label": "cat", "correct": True},
        {"request_id": "r1", "correct": True, "extra": 1},
        {"request_id": "", "correct": True},
        {"request_id": "r1", "correct": True, "item_index": -1},
    ],
)
def test_a_bad_feedback_body_is_a_422_problem(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_feedback_on_an_unknown_or_failed_request_is_refused(client: TestClient) -> None:
    unknown = client.post("/feedback", json={"request_id": "never-seen", "correct": True})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    failed = client.post("/classify", data={"top_k": "-1"}, files={"image": ("x.png", png(), "image/png")})
    assert failed.status_code == 422
    response = client.post("/feedback", json={"request_id": failed.headers["x-request-id"], "correct": True})
    assert response.status_code == 422 and "not answered" in response.json()["detail"]


def test_without_a_database_the_experiment_routes_are_503() -> None:
    app = create_app(ServingSettings(_env_file=None), backend=lambda: FakeModels())  # type: ignore[call-arg]
    client = TestClient(app)
    assert client.get("/experiments").status_code == 503
    assert client.post("/feedback", json={"request_id": "r", "correct": True}).status_code == 503
    body = classify(client, {"X-Client-Id": "alice"})
    assert (body["experiment"], body["arm"]) == (None, None)
