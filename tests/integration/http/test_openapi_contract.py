"""The OpenAPI spec is the wire format: every JSON answer of /api/v1, real models and photos, against the spec.

The app publishes its spec at /api/v1/openapi.json; each answer below is checked against the schema
that spec declares for its route and status (tests/integration/http/openapi_check.py), and every response the spec
declares must be among them. 422 is left out: FastAPI declares its own validation body there, while
the app answers every error as application/problem+json; declaring problems in the spec is its own change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from kernel.errors import ModelUnavailable
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from services.drift.monitor import latest_features
from services.drift.reference import build_reference, reference_path
from services.experiments.assignment import Arm
from services.experiments.store import create_experiment
from services.http.app import create_app
from services.http.dataplane import DataPlane
from services.models.catalogue import JOB_TASKS, MODEL_NAMES
from services.models.specs.lite0 import SERVED
from tests.integration.http.apps import job_app
from tests.integration.http.openapi_check import errors, response_schema
from tests.unit.services.http.test_health_states import StatusBackend

pytestmark = pytest.mark.integration

BROKEN = "broken.jpg"


@dataclass
class Answer:
    method: str
    path: str  # the route's template, as the spec names it
    response: Any  # the test client's response


def _images(photos: dict[str, bytes], *names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    data = {**photos, BROKEN: photos["chelsea.jpg"][:2000]}
    return [("images", (n, data[n], "image/png" if n.endswith(".png") else "image/jpeg")) for n in names]


def _image(photos: dict[str, bytes], name: str) -> dict[str, tuple[str, bytes, str]]:
    ((_, file),) = _images(photos, name)
    return {"image": file}


def _status_client(backend: StatusBackend) -> TestClient:
    return TestClient(create_app(get_settings(), backend=lambda: backend))  # type: ignore[arg-type,return-value]


def _experiment_answers(
    plane: DataPlane, c: TestClient, photos: dict[str, bytes], note: Callable[[str, str, Any], Any]
) -> None:
    """An A/A experiment on the classifier (both arms on the production release, the one version loaded), an answer
    and its feedback."""
    with Session(plane.engine) as session:
        arms = [Arm("control", SERVED, 1.0), Arm("candidate", SERVED, 1.0)]
        create_experiment(session=session, experiment_id="aa", model="classifier", arms=arms, salt="s")
        session.commit()
    plane.experiments.refresh()
    answered = note("POST", "/classify", c.post("/classify", files=_image(photos, "chelsea.jpg"))).json()
    assert answered["experiment"] == "aa", answered
    feedback = {"request_id": answered["request_id"], "label": answered["predictions"][0]["label"]}
    note("POST", "/feedback", c.post("/feedback", json=feedback))
    note("GET", "/experiments", c.get("/experiments"))
    note("GET", "/experiments/{experiment_id}", c.get("/experiments/aa"))


def _reference_of_the_logged(plane: DataPlane, directory: Path, model: str) -> None:
    """A drift reference built from the requests of ``model`` logged so far (so the check has one to compare)."""
    plane.log_writer.flush()
    with Session(plane.engine) as session:
        rows = latest_features(session, model=model, window=1000)
    version = rows[0][0]
    assert version is not None
    build_reference(model, version, [r for _, r in rows], source="test").save(reference_path(directory, model, version))


@pytest.fixture(scope="module")
def answers(
    backend: ThreadedClient, client: TestClient, photos: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Answer]]:
    got: list[Answer] = []

    def note(method: str, path: str, response: Any) -> Any:
        got.append(Answer(method, path, response))
        return response

    references = tmp_path_factory.mktemp("drift")
    settings = get_settings().model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("contract"),
            "max_batch_items": 3,
            "jobs_chunk_size": 2,
            "drift_reference_dir": references,
            "drift_min_rows": 2,
        }
    )
    with job_app(backend, settings) as app:
        c = app.client
        note("GET", "/drift/{model}", c.get("/drift/embedder"))  # insufficient_data: nothing logged yet
        for _ in range(2):  # a miss, then a hit from the result cache
            note("POST", "/classify", c.post("/classify", files=_image(photos, "chelsea.jpg")))
        note("POST", "/detect", c.post("/detect", files=_image(photos, "astronaut.png")))
        note("POST", "/detect", c.post("/detect", files=_image(photos, "coffee.jpg"), data={"classes": "4"}))
        three = _images(photos, "chelsea.jpg", BROKEN, "astronaut.png")
        for task in JOB_TASKS:
            note("POST", "/batch", c.post("/batch", files=three, data={"task": task}))
        job = note("POST", "/batch", c.post("/batch", files=three, data={"task": "detect", "mode": "job"})).json()
        note("GET", "/jobs/{job_id}", c.get(f"/jobs/{job['id']}"))
        app.dispatcher.run()
        note("GET", "/jobs/{job_id}", c.get(f"/jobs/{job['id']}"))
        other = c.post("/batch", files=three, data={"task": "classify", "mode": "job"}).json()
        app.dispatcher.processor.process(*app.dispatcher.chunks.pop(0))  # type: ignore[union-attr]
        note("GET", "/jobs/{job_id}", c.get(f"/jobs/{other['id']}", params={"offset": 1, "limit": 1}))
        note("DELETE", "/jobs/{job_id}", c.delete(f"/jobs/{other['id']}"))  # 202: cancelled
        note("DELETE", "/jobs/{job_id}", c.delete(f"/jobs/{other['id']}"))  # 200: it had ended
        added = note(
            "POST", "/gallery", c.post("/gallery", files=_image(photos, "coffee.jpg"), data={"metadata": '{"a": 1}'})
        )
        note("GET", "/gallery", c.get("/gallery"))
        note("POST", "/search", c.post("/search", files=_image(photos, "chelsea.jpg")))
        note("DELETE", "/gallery/{item_id}", c.delete(f"/gallery/{added.json()['id']}"))
        _experiment_answers(app.plane, c, photos, note)
        _reference_of_the_logged(app.plane, references, "classifier")
        note("GET", "/drift/{model}", c.get("/drift/classifier"))  # a report with its tests
        note("GET", "/models", c.get("/models"))
        note("GET", "/health", c.get("/health"))  # with the log sink, the cache and the jobs
    note("GET", "/health", client.get("/health"))  # with none of them
    for states in (
        dict.fromkeys(MODEL_NAMES, "ok") | {"detector": "degraded", "embedder": ModelUnavailable("unreachable")},
        {name: ModelUnavailable("unreachable") for name in MODEL_NAMES},  # 503
    ):
        apart = _status_client(StatusBackend(states))
        note("GET", "/models", apart.get("/models"))
        note("GET", "/health", apart.get("/health"))
    yield got


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_every_json_answer_is_what_the_spec_declares(answers: list[Answer], spec: dict[str, Any]) -> None:
    problems = []
    for answer in answers:
        status = answer.response.status_code
        schema = response_schema(spec, answer.path, answer.method, status)
        label = f"{answer.method} {answer.path} {status}"
        if schema is None:
            assert answer.response.content == b"", label
            continue
        assert answer.response.headers["content-type"] == "application/json", label
        problems += [f"{label}: {e}" for e in errors(answer.response.json(), schema, spec)]
    assert problems == []


def test_every_answer_the_spec_declares_is_checked(answers: list[Answer], spec: dict[str, Any]) -> None:
    declared = {
        (method.upper(), path, int(status))
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status != "422" and set(response.get("content") or {"application/json": {}}) == {"application/json"}
    }
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}  # Prometheus'
    checked = {(a.method, a.path, a.response.status_code) for a in answers}
    assert declared - checked == set()


def test_every_response_body_in_the_spec_refuses_undeclared_fields(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    open_ = {
        name
        for name, schema in schemas.items()
        if schema.get("type") == "object" and schema.get("additionalProperties", True) is not False
    }
    # Problem: RFC 9457 allows extension members; request bodies and FastAPI's own 422 body are not answers.
    assert {n for n in open_ if not n.startswith("Body_")} == {"Problem", "HTTPValidationError", "ValidationError"}


def _classify(answers: list[Answer]) -> dict[str, Any]:
    body: dict[str, Any] = next(a for a in answers if a.path == "/classify").response.json()
    return body


def test_the_check_refuses_an_undeclared_field(answers: list[Answer], spec: dict[str, Any]) -> None:
    schema = response_schema(spec, "/classify", "POST", 200)
    assert schema is not None
    body = _classify(answers)
    assert errors(body, schema, spec) == []
    assert errors({**body, "labels": []}, schema, spec) == ["$: 'labels' is not declared (additionalProperties: false)"]
    nested = copy.deepcopy(body)
    nested["predictions"][0]["rank"] = 1
    assert errors(nested, schema, spec) == ["$.predictions[0]: 'rank' is not declared (additionalProperties: false)"]


def test_the_check_refuses_a_missing_or_null_field(answers: list[Answer], spec: dict[str, Any]) -> None:
    schema = response_schema(spec, "/classify", "POST", 200)
    assert schema is not None
    body = _classify(answers)
    assert errors({k: v for k, v in body.items() if k != "model"}, schema, spec) == ["$: required 'model' is missing"]
    assert "label_id" in body["predictions"][0]  # Tiny-ImageNet labels carry their WordNet ids
    null_id = copy.deepcopy(body)
    null_id["predictions"][0]["label_id"] = None  # absent or a string, never null
    assert errors(null_id, schema, spec) == ["$.predictions[0].label_id: NoneType is not string"]
