"""The ``cv`` command over a mocked transport."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cv_client.cli import main
from tests.unit.sdk import bodies
from tests.unit.sdk.fake_server import FakeServer, files, form, problem_response


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "street.png"
    Image.new("RGB", (64, 48), (0, 0, 0)).save(path)
    return path


def run(server: FakeServer, *argv: str) -> int:
    return main(["--url", "http://cv.test", "--api-key", "k", *argv], transport=server.transport)


def test_classify_prints_the_result_as_json(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer().on("POST /api/v1/classify", bodies.classify())
    assert run(server, "classify", str(photo), "--top-k", "2") == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "tabby"
    assert form(server.last) == {"top_k": "2"} and files(server.last)[0].filename == "street.png"
    assert server.last.headers["authorization"] == "Bearer k"


def test_detect_writes_the_annotated_image(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer().on("POST /api/v1/detect", bodies.detect())
    out = tmp_path / "annotated.jpg"
    assert run(server, "detect", str(photo), "--out", str(out), "--confidence", "0.4", "--classes", "0,2") == 0
    assert form(server.last) == {"confidence": "0.4", "classes": "0,2"}
    assert json.loads(capsys.readouterr().out)["detections"][0]["label"] == "person"
    annotated = Image.open(out)
    assert annotated.format == "JPEG" and annotated.getpixel((10, 20)) != (0, 0, 0)


def test_search_models_and_health(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = (
        FakeServer()
        .on("POST /api/v1/search", bodies.search())
        .on("GET /api/v1/models", bodies.models())
        .on("GET /api/v1/health", bodies.health())
    )
    assert run(server, "search", str(photo), "--expand", "5") == 0
    assert server.last is not None and form(server.last) == {"top_k": "5", "expand": "5"}
    assert run(server, "models") == 0
    assert run(server, "health") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["results"][0]["id"] == "g1" and lines[1]["models"][0]["model"] == "classifier"
    assert lines[2]["status"] == "ok"


def test_batch_submits_a_job_waits_and_prints_one_line_per_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.jpg", "a.png"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG" if name.endswith("png") else "JPEG")
        (folder / name).write_bytes(buffer.getvalue())
    (folder / "notes.txt").write_text("not an image")
    server = (
        FakeServer()
        .on("POST /api/v1/batch", httpx.Response(202, json=bodies.job("queued")))
        .on(
            "GET /api/v1/jobs/job-123456789",
            bodies.job("running"),
            bodies.job("succeeded"),
            bodies.job("succeeded", items=[bodies.job_item(0), bodies.job_item(1)]),
        )
    )
    assert run(server, "batch", str(folder), "--task", "detect", "--poll-interval", "0") == 0
    assert form(server.requests[0]) == {"task": "detect", "mode": "job"}
    assert [p.filename for p in files(server.requests[0])] == ["a.png", "b.jpg"]
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [(line["index"], Path(line["path"]).name) for line in lines] == [(0, "a.png"), (1, "b.jpg")]
    assert lines[0]["result"]["detections"][0]["label"] == "person"
    assert "2/2" in captured.err  # the progress bar


def test_an_api_error_prints_the_problem_and_exits_1(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer().on("POST /api/v1/classify", problem_response(400, bodies.problem(400, "invalid-image")))
    assert run(server, "classify", str(photo)) == 1
    problem = json.loads(capsys.readouterr().err)
    assert problem["type"] == "urn:cv-api:problem:invalid-image" and problem["request_id"] == "req-9"


def test_a_missing_file_or_empty_folder_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeServer(), "classify", str(tmp_path / "nope.jpg")) == 1
    assert run(FakeServer(), "batch", str(tmp_path)) == 1
    assert "no images" in capsys.readouterr().err
