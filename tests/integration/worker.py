"""Real `celery worker` processes for the job tests, each in a process group of its own so it can be killed whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.config import ServingSettings
from services.jobs.embedded import worker_command
from tests.integration.server import REPO


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a lost machine or an OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown, as the api's embedded worker gets: SIGTERM to the main process only."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def settings_from(env: dict[str, str]) -> ServingSettings:
    """The settings a process started with ``env`` (over this one's environment) reads."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return ServingSettings(_env_file=None)  # type: ignore[call-arg]


def _start(command: list[str], env: dict[str, str], log_path: Path) -> Worker:
    """``command`` in a process group of its own, with ``env`` (CV_* settings) over the test's environment."""
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "CV_LOG_JSON": "true", **env}
    handle = log_path.open("ab")
    process = subprocess.Popen(
        command, cwd=REPO, env=full_env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Worker(process, log_path)


def start_worker(env: dict[str, str], log_path: Path, name: str, *, beat: bool = False) -> Worker:
    """``celery -A services.jobs.celery_app worker`` with ``env`` (CV_* settings) over the test's environment.

    With ``beat``, it runs Celery beat inside itself, as the api's embedded worker does.
    """
    return _start(worker_command(settings_from(env), hostname=f"{name}@%h", beat=beat), env, log_path)


def start_beat(env: dict[str, str], log_path: Path) -> Worker:
    """Celery beat on its own, as the production topology runs it: ``celery --app services.jobs.celery_beat beat``."""
    schedule = Path(env["CV_DATA_DIR"]) / "celerybeat-schedule"
    app = ["--app", "services.jobs.celery_beat", "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
    return _start([sys.executable, "-m", "celery", *app], env, log_path)
