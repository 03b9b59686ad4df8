"""Batch jobs through the real routes and models in process: POST /batch as a job, GET and DELETE /jobs/{id}, the CLI.

The worker's part runs here too (tests/integration/http/apps.py): a dispatcher that hands each chunk to the real
ChunkProcessor over the in-process models (the Celery worker itself is tested in tests/integration/test_jobs_worker.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from kernel.db.tables import InferenceLog
from services.clients.threaded import ThreadedClient
from services.config import get_settings
from services.jobs import submit as submit_cli
from tests.integration.http.apps import JobApp, job_app

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture
def app(backend: ThreadedClient, tmp_path: Path) -> Iterator[JobApp]:
    settings = get_settings().model_copy(update={"data_dir": tmp_path, "max_batch_items": 3, "jobs_chunk_size": 2})
    with job_app(backend, settings) as pair:
        yield pair


def _files(photos: dict[str, bytes], names: list[str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (n, photos[n], "image/png" if n.endswith(".png") else "image/jpeg")) for n in names]


NAMES = ["chelsea.jpg", "astronaut.png", "coffee.jpg", "rocket.jpg", "chelsea.jpg"]


def test_a_job_is_accepted_then_answers_like_the_inline_batch(app: JobApp, photos: dict[str, bytes]) -> None:
    response = app.client.post(
        "/batch",
        files=_files(photos, NAMES),
        data={"task": "classify", "top_k": "2", "mode": "job"},
        headers={"X-Request-ID": "job-req"},
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == body["location"] == f"/api/v1/jobs/{body['id']}"
    assert (body["status"], body["item_count"], body["progress"], body["request_id"]) == ("queued", 5, 0.0, "job-req")
    assert body["counts"] == {"pending": 5, "succeeded": 0, "failed": 0, "cancelled": 0}
    assert app.dispatcher.chunks == [(body["id"], [0, 1]), (body["id"], [2, 3]), (body["id"], [4])]

    app.dispatcher.run()
    job = app.client.get(f"/jobs/{body['id']}").json()
    assert (job["status"], job["progress"], job["next_offset"]) == ("succeeded", 1.0, None)
    assert job["started_at"] and job["finished_at"]
    assert [i["filename"] for i in job["items"]] == NAMES
    first = job["items"][0]["result"]
    assert len(first["predictions"]) == 2 and first["model"]["name"] == "classifier"
    inline = app.client.post("/batch", files=_files(photos, NAMES[:1]), data={"task": "classify", "top_k": "2"})
    assert inline.status_code == 200
    assert first["predictions"][0]["label"] == inline.json()["items"][0]["result"]["predictions"][0]["label"]

    # One inference-log row per image, written by the worker with the job id; none for the 202 itself.
    app.plane.log_writer.flush()
    with Session(app.plane.engine) as session:
        rows = list(session.exec(select(InferenceLog).where(col(InferenceLog.request_id) == "job-req")))
    assert sorted(r.item_index for r in rows) == [0, 1, 2, 3, 4]
    assert {(r.job_id, r.route, r.status) for r in rows} == {(body["id"], "/api/v1/batch", 200)}


def test_a_batch_over_the_inline_limit_becomes_a_job(app: JobApp, photos: dict[str, bytes]) -> None:
    small = app.client.post("/batch", files=_files(photos, NAMES[:3]), data={"task": "detect"})
    assert small.status_code == 200 and small.json()["count"] == 3
    big = app.client.post("/batch", files=_files(photos, NAMES[:4]), data={"task": "detect", "classes": "0"})
    assert big.status_code == 202
    app.dispatcher.run()
    job = app.client.get(big.headers["Location"].removeprefix("/api/v1")).json()
    assert job["task"] == "detect" and job["status"] == "succeeded"
    assert all(d["class_id"] == 0 for item in job["items"] for d in item["result"]["detections"])


def test_inline_mode_over_the_limit_is_413(app: JobApp, photos: dict[str, bytes]) -> None:
    response = app.client.post("/batch", files=_files(photos, NAMES[:4]), data={"task": "classify", "mode": "inline"})
    assert response.status_code == 413 and "mode=job" in response.json()["detail"]


def test_a_job_over_its_item_limit_is_413(
    app: JobApp, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = app.client.app.routes[0].app.state.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "job_max_items", 2)
    response = app.client.post("/batch", files=_files(photos, NAMES[:3]), data={"task": "classify", "mode": "job"})
    assert response.status_code == 413


def test_items_come_in_pages(app: JobApp, photos: dict[str, bytes]) -> None:
    job_id = app.client.post("/batch", files=_files(photos, NAMES), data={"task": "classify", "mode": "job"}).json()[
        "id"
    ]
    page = app.client.get(f"/jobs/{job_id}", params={"offset": 1, "limit": 2}).json()
    assert [i["index"] for i in page["items"]] == [1, 2] and page["next_offset"] == 3
    assert all(i["status"] == "pending" and i["result"] is None for i in page["items"])
    assert app.client.get(f"/jobs/{job_id}", params={"limit": 1001}).status_code == 422


def test_a_cancelled_job_skips_its_pending_items(app: JobApp, photos: dict[str, bytes]) -> None:
    job_id = app.client.post("/batch", files=_files(photos, NAMES), data={"task": "classify", "mode": "job"}).json()[
        "id"
    ]
    app.dispatcher.processor.process(*app.dispatcher.chunks.pop(0))  # type: ignore[union-attr]
    response = app.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled" and body["counts"] == {
        "pending": 0,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 3,
    }
    assert body["progress"] == 1.0
    app.dispatcher.run()  # the chunks still queued find the job cancelled
    job = app.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and [i["status"] for i in job["items"]][2:] == ["cancelled"] * 3
    assert app.client.delete(f"/jobs/{job_id}").status_code == 200


def test_unknown_jobs_are_404_problems(app: JobApp) -> None:
    for response in (app.client.get("/jobs/nope"), app.client.delete("/jobs/nope")):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM) and response.json()["detail"] == "no job 'nope'"


def test_a_server_without_jobs_says_503(client: TestClient, photos: dict[str, bytes]) -> None:
    response = client.post("/batch", files=_files(photos, NAMES[:1]), data={"task": "classify", "mode": "job"})
    assert response.status_code == 503 and response.json()["type"].endswith("jobs-unavailable")
    assert client.get("/jobs/abc").status_code == 503


def test_the_submit_command_uploads_a_folder_and_waits(
    app: JobApp, photos: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        (folder / ("sub" if i % 2 else ".") / f"{i}-{name}").write_bytes(photos[name])
    (folder / "notes.txt").write_text("not an image")
    app.dispatcher.auto = True
    out = tmp_path / "items.jsonl"
    client = app.client
    client.base_url = client.base_url.copy_with(path="/")
    code = submit_cli.main([str(folder), "--task", "classify", "--top-k", "1", "--wait", "--out", str(out)], client)
    assert code == 0
    printed = capsys.readouterr()
    assert "accepted: 5 images" in printed.out and "succeeded: 5 images (5 succeeded)" in printed.out
    assert "5/5" in printed.err  # the progress bar
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all('"status": "succeeded"' in line for line in lines)


def test_the_submit_command_reports_a_refusal_and_an_empty_folder(client: TestClient, tmp_path: Path) -> None:
    base = client.base_url
    client.base_url = base.copy_with(path="/")
    try:
        with pytest.raises(SystemExit, match="no images"):
            submit_cli.main([str(tmp_path), "--task", "detect"], client)
        (tmp_path / "a.png").write_bytes(b"\x89PNG")
        with pytest.raises(SystemExit, match="job refused: 503"):
            submit_cli.main([str(tmp_path), "--task", "detect", "--confidence", "0.5", "--version", "v2"], client)
    finally:
        client.base_url = base
