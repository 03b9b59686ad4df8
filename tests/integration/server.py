"""Start the real `bentoml serve services.api:Api` on loopback for the integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.runner import own_bentoml_home
from deploy.topology import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_server(
    log_path: Path,
    env: Mapping[str, str | None],
    timeout: float = 120.0,
    *,
    cwd: Path = REPO,
    port: int | None = None,
) -> Server:
    """Start the api service and its model services and wait until health says ok.

    The models run in their own services (``CV_MODELS_IN_PROCESS=false``), the topology production deploys and the
    one whose hop these tests exercise; ``env={"CV_MODELS_IN_PROCESS": None}`` serves `make serve`'s default instead
    (the models in the api process, docs/adr/0014-models-in-the-api-process-on-one-box.md). A None value unsets.

    ``cwd`` is the checkout whose ``services.api:Api`` is served (benchmarks/regression.py serves a baseline's
    temporary worktree too); ``port`` defaults to a free one.

    The result cache is off unless ``env`` turns it on (``CV_CACHE_ENABLED=true``): the load test and
    the benchmarks send one image many times and mean to measure the models, not the cache. So is the
    embedded job worker (``CV_JOBS_EMBEDDED_WORKER=true``), which only the batch-job tests need.
    """
    port = port or free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    defaults = {
        "BENTOML_DO_NOT_TRACK": "true",
        "CV_LOG_JSON": "true",
        "CV_CACHE_ENABLED": "false",
        "CV_JOBS_EMBEDDED_WORKER": "false",
        "CV_MODELS_IN_PROCESS": "false",
    }
    merged = {**os.environ, **defaults, **env}
    full_env = {key: value for key, value in merged.items() if value is not None}
    if "BENTOML_HOME" in full_env:
        full_env["BENTOML_HOME"] = str(
            own_bentoml_home(Path(full_env["BENTOML_HOME"]), log_path.parent / f"bentoml-{port}")
        )
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [bentoml, "serve", "services.api:Api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"server not healthy after {timeout}s:\n{server.log()[-4000:]}")
