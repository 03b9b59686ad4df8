"""A/B experiments in the real `bentoml serve`: sticky arms over HTTP, a pinned version bypasses, feedback counts.

One server per database (embedded SQLite, then PostgreSQL in a schema of its own), with classifier v1 (the
default here) and the production release both loaded. The experiment is made with the command line against the
server's database, as an operator would; the server picks it up at its next snapshot refresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLog
from services.config import ServingSettings
from services.experiments.__main__ import main as experiments_cli
from services.experiments.store import feedback_counts
from services.models.specs.lite0 import SERVED
from tests.integration.conftest import fresh_schema, postgres_url
from tests.integration.server import Server, start_server
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPERIMENT = "classifier-ab"
VERSIONS = {"control": "v1", "candidate": SERVED}


@dataclass
class Stack:
    server: Server
    db: Engine  # the server's database, read and written as the command line does
    photo: bytes


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest,
    model_store: list[str],
    bentoml_home: str,
    photos: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp(f"experiments-{request.param}")
    env = {
        "BENTOML_HOME": bentoml_home,
        "CV_DATA_DIR": str(data),
        "CV_DEFAULT_VERSIONS": '{"classifier": "v1"}',  # loads the archived v1 beside the production release
        "CV_EXPERIMENTS_REFRESH_S": "0.5",
        "CV_LOG_FLUSH_INTERVAL_S": "0.2",
    }
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            endpoint = request.getfixturevalue("postgres_endpoint")
            schema = stack.enter_context(fresh_schema())
            url = postgres_url(endpoint[1], schema, host=endpoint[0])
            env["CV_DATABASE_URL"] = url
        server = start_server(data / "server.log", env)  # migrates its database at start-up (local mode)
        stack.callback(server.stop)
        db = create_db_engine(ServingSettings(_env_file=None, database_url=url, data_dir=data).sqlalchemy_url)  # type: ignore[call-arg]
        stack.callback(db.dispose)
        arms = [f"--arm={name}={version}:50" for name, version in VERSIONS.items()]
        assert experiments_cli(["create", "--model=classifier", f"--id={EXPERIMENT}", "--salt=it", *arms], db) == 0
        running = Stack(server, db, photos["chelsea.jpg"])
        wait_for(lambda: classify(running, "probe").get("experiment") == EXPERIMENT, what="the experiment to run")
        yield running


def classify(stack: Stack, client: str | None, **data: str) -> dict[str, Any]:
    headers = {"X-Client-Id": client} if client else {}
    response = httpx.post(
        f"{stack.server.url}/api/v1/classify",
        files={"image": ("c.jpg", stack.photo, "image/jpeg")},
        data=data,
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_client_keeps_its_arm_and_version_across_requests(stack: Stack) -> None:
    for client in ("alice", "bob", "carol"):
        bodies = [classify(stack, client) for _ in range(4)]
        answers = {(b["experiment"], b["arm"], b["model"]["version"]) for b in bodies}
        assert len(answers) == 1, (client, answers)
        ((experiment, arm, version),) = answers
        assert experiment == EXPERIMENT and version == VERSIONS[arm]


def test_different_clients_spread_over_the_arms(stack: Stack) -> None:
    arms = [classify(stack, f"client-{i}")["arm"] for i in range(30)]
    assert set(arms) == set(VERSIONS)
    assert 5 <= arms.count("control") <= 25


def test_a_pinned_version_bypasses_the_experiment(stack: Stack) -> None:
    for version in ("v1", SERVED):
        body = classify(stack, "alice", version=version)
        assert (body["experiment"], body["arm"], body["model"]["version"]) == (None, None, version)


def test_the_inference_log_records_experiment_and_arm(stack: Stack) -> None:
    body = classify(stack, "dave")

    def logged() -> list[InferenceLog]:
        with Session(stack.db) as session:
            query = select(InferenceLog).where(col(InferenceLog.request_id) == body["request_id"])
            return list(session.exec(query))

    wait_for(logged, what="the answer's log row")
    (row,) = logged()
    assert (row.experiment, row.arm, row.version) == (EXPERIMENT, body["arm"], body["model"]["version"])


def test_feedback_is_stored_and_counted_in_the_analysis(stack: Stack) -> None:
    url = f"{stack.server.url}/api/v1"
    before = httpx.get(f"{url}/experiments/{EXPERIMENT}", timeout=30).json()
    body = classify(stack, "erin")
    label = body["predictions"][0]["label"]
    # At once: the api flushes its log buffer when the answer is not in the database yet.
    response = httpx.post(f"{url}/feedback", json={"request_id": body["request_id"], "label": label}, timeout=30)
    assert response.status_code == 201, response.text
    assert (response.json()["correct"], response.json()["arm"]) == (True, body["arm"])
    thumbs_down = {"request_id": body["request_id"], "correct": False}
    assert httpx.post(f"{url}/feedback", json=thumbs_down, timeout=30).json()["correct"] is False
    with Session(stack.db) as session:
        right, judged = feedback_counts(session=session, experiment_id=EXPERIMENT)[body["arm"]]
    assert (right, judged) == (0, 1)  # the second verdict replaced the first
    after = httpx.get(f"{url}/experiments/{EXPERIMENT}", timeout=30)
    assert after.status_code == 200
    assert after.json()["analysis"] != before["analysis"]
    assert all(f'"{arm}"' in after.text for arm in VERSIONS)
    listed = httpx.get(f"{url}/experiments", timeout=30).json()["experiments"]
    assert [(e["id"], e["running"]) for e in listed] == [(EXPERIMENT, True)]
    unknown = httpx.post(f"{url}/feedback", json={"request_id": "never-sent", "correct": True}, timeout=30)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


def test_a_paused_experiment_assigns_nobody(stack: Stack) -> None:
    assert experiments_cli(["pause", EXPERIMENT], stack.db) == 0
    try:
        wait_for(lambda: classify(stack, "alice")["experiment"] is None, what="the pause to reach the api")
        assert classify(stack, "alice")["model"]["version"] == "v1"  # the default version
    finally:
        assert experiments_cli(["resume", EXPERIMENT], stack.db) == 0
    wait_for(lambda: classify(stack, "alice")["experiment"] == EXPERIMENT, what="the resume to reach the api")
