"""`python -m deploy up` as an operator runs it: it says when it is ready, a key made with `python -m deploy
keys` classifies through its edge, and Ctrl-C (SIGINT) takes every process down with it; so does a
SIGKILL of the command itself, which runs no shutdown code (the kernel's parent-death signal).

The other e2e tests drive the same topology through `deploy.runner.Topology`; this one is the command
line around it, with its output piped (as under a supervisor).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from deploy.topology import REPO
from tests.integration.conftest import REDIS_URL, fresh_schema, postgres_url, redis_keys
from tests.labels import CATS

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def _deploy(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "deploy", "--run-dir", str(run_dir), *args]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_deploy_up_serves_through_its_edge_and_leaves_nothing_running(
    stop: signal.Signals,
    model_store: list[str],
    bentoml_home: str,
    postgres_endpoint: tuple[str, int],
    redis_endpoint: tuple[str, int],
    photos: dict[str, bytes],
    tmp_path: Path,
) -> None:
    namespace = f"up{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / "run"
    with fresh_schema() as schema, redis_keys(f"{namespace}:"):
        options = {
            "--database-url": postgres_url(postgres_endpoint[1], schema, host=postgres_endpoint[0]),
            "--redis-url": REDIS_URL,
            "--bentoml-home": bentoml_home,
            "--base-port": "0",
            "--namespace": namespace,
            "--api-replicas": "1",
        }
        up = subprocess.Popen(
            _deploy(run_dir, "up", *(part for pair in options.items() for part in pair)),
            cwd=REPO,
            # Without PYTHONUNBUFFERED (set on the CI machine), as a supervisor would run it: output block-buffered.
            env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "CV_CACHE_ENABLED": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert up.stdout is not None
            for line in up.stdout:
                lines.append(line)
                if line.startswith("ready: ") or "create a key" in line:
                    ready.set()
            ready.set()  # the command ended

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        children: list[psutil.Process] = []
        left: list[psutil.Process] = []
        try:
            assert ready.wait(240) and up.poll() is None, "".join(lines)
            edge = re.search(r"ready: (http://\S+)/ ", "".join(lines))
            assert edge, "".join(lines)
            children = psutil.Process(up.pid).children(recursive=True)
            assert len(children) >= 7, children  # migrations done; 3 models, auth, api, worker, Traefik at least

            made = subprocess.run(
                _deploy(run_dir, "keys", "create", "--tier", "pro", "--name", "operator"),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip().splitlines()[-1]  # printed once, last
            classified = httpx.post(
                f"{edge.group(1)}/api/v1/classify",
                headers={"Authorization": f"Bearer {key}"},
                files={"image": ("cat.jpg", photos["chelsea.jpg"], "image/jpeg")},
                timeout=60,
            )
            assert classified.status_code == 200, classified.text
            assert classified.json()["predictions"][0]["label"] in CATS
            assert httpx.get(f"{edge.group(1)}/api/v1/models", timeout=10).status_code == 401

            up.send_signal(stop)
            assert up.wait(90) == (0 if stop == signal.SIGINT else -signal.SIGKILL), "".join(lines)
            # Ctrl-C: the command stops them; SIGKILL: each gets SIGTERM from the kernel and stops itself.
            _, left = psutil.wait_procs(children, timeout=60)
        finally:  # whatever failed, nothing of this run may outlive the test
            if up.poll() is None:
                children = children or psutil.Process(up.pid).children(recursive=True)
                up.kill()
                up.wait()
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        reader.join(10)
        assert left == [], left
        assert (run_dir / "gateway.env").stat().st_mode & 0o077 == 0  # the key-hash secret is the operator's
