"""`python -m services.serve`: a model service and the api as one BentoML worker, no supervisor, on loopback.

The containers and deploy/ run every serving process this way (docs/adr/0018-one-process-per-serving-container.md);
the e2e topology tests drive it through the edge. Here: the process that starts is the worker (nothing under it),
it answers and exports metrics, a SIGTERM stops it cleanly, and what it cannot serve alone it refuses at once.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from deploy.runner import own_bentoml_home
from deploy.topology import free_port
from tests.integration.server import REPO, Server
from tests.waiting import wait_for


def _env(bentoml_home: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CV_") or k == "CV_MODEL_MIRROR_DIR"}
    return {
        **env,
        "BENTOML_HOME": str(own_bentoml_home(Path(bentoml_home), home)),
        "BENTOML_DO_NOT_TRACK": "true",
        "CV_LOG_JSON": "true",
        **extra,
    }


def _launch(target: str, env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "services.serve", target, "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as handle:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"exited with {process.returncode}"
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def classifier(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("bare-classifier")
    port = free_port()
    log_path = folder / "classifier.log"
    process = _launch("services.classifier:ClassifierService", _env(bentoml_home, folder / "home"), log_path, port)
    bare = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_for(lambda: _ready(bare.url, process), 120, "the bare worker's /readyz", 0.5, lambda: bare.log()[-4000:])
        yield bare
    finally:
        bare.stop()


def test_the_started_process_is_the_worker_with_nothing_under_it(classifier: Server) -> None:
    worker = psutil.Process(classifier.process.pid)
    command = worker.cmdline()
    assert command[1:3] == ["-m", "_bentoml_impl.worker.service"], command
    assert command[3] == "services.classifier:ClassifierService"
    assert command[command.index("--worker-id") + 1] == "1"
    assert worker.children(recursive=True) == []


def test_it_answers_and_exports_metrics(classifier: Server) -> None:
    status = httpx.post(f"{classifier.url}/status", json={}, timeout=10)
    assert status.status_code == 200
    assert status.json()["model"] == "classifier" and status.json()["status"] == "ok"
    metrics = httpx.get(f"{classifier.url}/metrics", timeout=10).text
    assert 'cv_model_version_loaded{model="classifier"' in metrics


def test_an_idle_keep_alive_connection_outlives_uvicorns_five_seconds(classifier: Server) -> None:
    # The api's client of a model service keeps an idle connection 15 s: the worker must not close it first.
    command = psutil.Process(classifier.process.pid).cmdline()
    assert command[command.index("--timeout-keep-alive") + 1] == "20"  # CV_KEEP_ALIVE_TIMEOUT_S's default
    address = urlsplit(classifier.url)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=10)
    try:
        for wait in (0.0, 6.0):  # uvicorn's own default closes a connection idle for 5 s
            time.sleep(wait)
            connection.request("GET", "/readyz")  # on the same socket: http.client never reconnects by itself
            response = connection.getresponse()
            assert (response.status, response.read(), response.getheader("connection")) == (200, b"\n", None)
    finally:
        connection.close()


def test_sigterm_stops_it_cleanly(classifier: Server) -> None:
    classifier.process.send_signal(signal.SIGTERM)
    # Uvicorn shuts down (the service's cleanup runs), then raises the signal it caught again: killed by SIGTERM.
    assert classifier.process.wait(timeout=30) == -signal.SIGTERM, classifier.log()[-4000:]
    assert "Service instance cleanup finalized" in classifier.log()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{classifier.url}/readyz", timeout=2)


def _refused(target: str, env: dict[str, str], tmp_path: Path, port: int) -> str:
    process = _launch(target, env, tmp_path / "refused.log", port)
    assert process.wait(timeout=120) == 2, (tmp_path / "refused.log").read_text()
    return (tmp_path / "refused.log").read_text()


def test_the_api_with_model_services_but_no_urls_is_refused(
    model_store: list[str], bentoml_home: str, tmp_path: Path
) -> None:
    env = _env(bentoml_home, tmp_path / "home", CV_MODELS_IN_PROCESS="false")
    log = _refused("services.api:Api", env, tmp_path, free_port())
    assert "without a URL" in log and "`bentoml serve` starts those" in log


def test_a_port_in_use_is_refused(model_store: list[str], bentoml_home: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        log = _refused("services.classifier:ClassifierService", _env(bentoml_home, tmp_path / "home"), tmp_path, port)
    assert "services.serve:" in log and "in use" in log
