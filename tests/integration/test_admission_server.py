"""Admission control in the real `bentoml serve`: a flood of 64 concurrent classify requests on a 2-slot api.

Every answer must be a 200 or a 503 ``overloaded`` problem+json with ``Retry-After``; every 200 must be in the
inference log (PostgreSQL, a schema of its own) and no refused request may be (it never reached a model); the
server's refusal counter must equal the 503s seen; /health answers throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from kernel.db.session import create_db_engine
from kernel.db.tables import InferenceLog
from services.config import ServingSettings
from tests.integration.conftest import fresh_schema, postgres_url
from tests.integration.server import Server, start_server
from tests.integration.test_shadow_server import metric
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOD = 64


@pytest.fixture(scope="module")
def flooded(
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Engine]]:
    data = tmp_path_factory.mktemp("admission-server")
    with fresh_schema() as schema:
        url = postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0])
        env = {
            "BENTOML_HOME": bentoml_home,
            "CV_DATA_DIR": str(data),
            "CV_DATABASE_URL": url,
            "CV_ADMISSION_MAX_INFLIGHT": "2",
            "CV_ADMISSION_QUEUE_TIMEOUT_MS": "0",  # no queue: whoever finds both slots busy is refused
            "CV_LOG_FLUSH_INTERVAL_S": "0.2",
        }
        server = start_server(data / "server.log", env)
        db = create_db_engine(ServingSettings(_env_file=None, database_url=url).sqlalchemy_url)  # type: ignore[call-arg]
        try:
            yield server, db
        finally:
            server.stop()
            db.dispose()


async def _flood(url: str, image: bytes) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=FLOOD)) as client:

        async def one(i: int) -> httpx.Response:
            return await client.post(
                "/api/v1/classify",
                files={"image": ("chelsea.jpg", image, "image/jpeg")},
                headers={"X-Request-ID": f"flood-{i}"},
            )

        health = client.get("/api/v1/health")
        answers = await asyncio.gather(*(one(i) for i in range(FLOOD)), health)
    assert answers[-1].status_code == 200, answers[-1].text  # never refused, even in the flood
    return list(answers[:-1])


def test_a_flood_is_answered_or_refused_cleanly_and_nothing_admitted_is_lost(
    flooded: tuple[Server, Engine], photos: dict[str, bytes]
) -> None:
    server, db = flooded
    refused_before = metric(httpx.get(f"{server.url}/api/v1/metrics").text, "cv_admission_refused_total", {})
    answers = asyncio.run(_flood(server.url, photos["chelsea.jpg"]))

    assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers if r.status_code not in (200, 503)]
    ok = {r.headers["x-request-id"] for r in answers if r.status_code == 200}
    refused = [r for r in answers if r.status_code == 503]
    assert ok and refused, "64 requests on 2 slots: some answered, some refused"
    for r in refused:
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1  # grows with refusals per admission (CV_ADMISSION_RETRY_AFTER_MAX_S)
        assert r.json()["type"] == "urn:cv-api:problem:overloaded"
    for r in answers:
        if r.status_code == 200:
            assert r.json()["predictions"], r.text

    def logged() -> set[str]:
        with Session(db) as session:
            query = select(InferenceLog.request_id).where(col(InferenceLog.request_id).startswith("flood-"))
            return {str(request_id) for request_id in session.exec(query)}

    wait_for(lambda: logged() >= ok, 60, what="every answered request in the inference log", interval_s=0.5)
    assert logged() == ok  # and no refused one: it never reached a model
    refused_after = metric(httpx.get(f"{server.url}/api/v1/metrics").text, "cv_admission_refused_total", {})
    assert refused_after - refused_before == len(refused)
