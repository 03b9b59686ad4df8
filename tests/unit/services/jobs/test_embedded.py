"""EmbeddedWorker: the api's child worker is restarted when it dies and stopped with the api."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from services.config import ServingSettings
from services.jobs.embedded import EmbeddedWorker, worker_command
from tests.waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]


def test_a_dead_worker_is_started_again_and_stop_ends_it() -> None:
    worker = EmbeddedWorker(SLEEPER, restart_delay_s=0.1).start()
    try:
        wait_for(lambda: worker.pid is not None)
        first = worker.pid
        assert first is not None and worker.describe() == {"status": "ok", "pid": first, "restarts": 0}
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: worker.pid not in (None, first))
        assert worker.restarts == 1
    finally:
        worker.stop()
    assert worker.pid is None and worker.describe()["status"] == "down"


def test_a_worker_that_ignores_sigterm_is_killed() -> None:
    worker = EmbeddedWorker(STUBBORN, stop_timeout_s=0.5).start()
    wait_for(lambda: worker.pid is not None)
    time.sleep(0.3)  # let it install its handler
    started = time.monotonic()
    worker.stop()
    assert worker.pid is None and time.monotonic() - started < 10


def test_the_command_runs_celery_on_the_configured_queue() -> None:
    settings = ServingSettings(_env_file=None, jobs_queue="q1", jobs_worker_concurrency=3)  # type: ignore[call-arg]
    command = worker_command(settings, hostname="w@h")
    assert command[1:5] == ["-m", "celery", "--app", "services.jobs.celery_app"]
    joined = " ".join(command)
    assert "--queues q1" in joined and "--concurrency 3" in joined and "--hostname w@h" in joined
    assert "--without-mingle" in joined and "--pool prefork" in joined


def test_the_command_embeds_celery_beat_only_when_asked(tmp_path: Path) -> None:
    settings = ServingSettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert "--beat" not in worker_command(settings)
    command = worker_command(settings, beat=True)
    assert command[command.index("--beat") :] == ["--beat", "--schedule", str(tmp_path / "celerybeat-schedule")]
