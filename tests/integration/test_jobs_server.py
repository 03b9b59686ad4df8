"""500 Tiny-ImageNet images as one batch job through the real `bentoml serve`, as `make serve` runs it.

Local mode, nothing configured: SQLite for the database, the no-server broker, and the job worker the
api starts beside itself, which calls the model services (their adaptive batching) through the
addresses `bentoml serve` gave the api. The submit command uploads the folder and follows the job;
this test watches the progress through the API meanwhile, then checks the results, the inference
logs (one row per image, with the job id) and the job metrics.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import REPO, Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COUNT = 500


@pytest.fixture(scope="module")
def job_server(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("server-jobs")
    env = {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data), "CV_JOBS_EMBEDDED_WORKER": "true"}
    server = start_server(data / "server.log", env, timeout=180)
    yield server
    server.stop()


def test_a_500_image_job_through_the_api_shows_progress_and_succeeds(
    job_server: Server, tiny_imagenet_val: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    folder = tmp_path / "val"
    folder.mkdir()
    for name, data in tiny_imagenet_val[:COUNT]:
        (folder / name).write_bytes(data)
    out = tmp_path / "items.jsonl"
    started = time.monotonic()
    command = [sys.executable, "-m", "services.jobs.submit", str(folder), "--task", "classify", "--top-k", "1"]
    cli = subprocess.Popen(
        [*command, "--url", job_server.url, "--wait", "--interval", "0.2", "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout is not None
    accepted = cli.stdout.readline()
    found = re.match(r"job (\w+) accepted: 500 images; follow (\S+)", accepted)
    assert found, accepted + (cli.stderr.read() if cli.stderr else "")
    job_id, location = found.groups()

    seen: list[float] = []
    with httpx.Client(base_url=job_server.url, timeout=30) as client:
        while cli.poll() is None and time.monotonic() - started < 600:
            seen.append(client.get(location, params={"limit": 0}).json()["progress"])
            time.sleep(0.3)
        stdout, stderr = cli.communicate(timeout=60)
        job = client.get(location, params={"limit": 0}).json()
        metrics = client.get("/api/v1/metrics").text
    elapsed = time.monotonic() - started
    assert cli.returncode == 0, stdout + stderr[-2000:]
    assert f"job {job_id} succeeded: 500 images (500 succeeded)" in stdout
    assert "500/500" in stderr  # the CLI's progress bar
    assert job["status"] == "succeeded" and job["counts"]["succeeded"] == COUNT and job["progress"] == 1.0
    moving = sorted(set(seen))
    assert seen == sorted(seen) and len([p for p in moving if 0 < p < 1]) >= 3, seen  # progress moved, never back
    items = out.read_text().splitlines()
    assert len(items) == COUNT and all('"http_status": 200' in line for line in items)

    # The inference logs: one row per image, with the job id, as the worker answered it.
    with sqlite3.connect(Path(job_server.log_path.parent) / "cv.sqlite3") as db:
        rows = db.execute(
            "SELECT item_index, count(*), min(status), min(model), min(route) FROM inference_log "
            "WHERE job_id = ? GROUP BY item_index",
            (job_id,),
        ).fetchall()
    assert sorted(rows) == [(i, 1, 200, "classifier", "/api/v1/batch") for i in range(COUNT)]
    # The worker ran through the model services and shows in the api's metrics.
    log = job_server.log()
    assert "job worker calls the model services" in log
    assert re.search(r'cv_job_items_total\{outcome="succeeded",task="classify"\} 500\.0', metrics), metrics[-2000:]
    print(f"500 images in {elapsed:.1f} s; progress seen: {moving[:5]} ... {moving[-3:]}")
