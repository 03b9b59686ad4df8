"""The job worker of local mode, run by the api process beside itself: started with it, restarted, stopped with it.

``make serve`` is one ``bentoml serve``; the api process starts ``celery worker`` as its child, so
the worker inherits ``BENTOML_RUNNER_MAP`` (where ``bentoml serve`` put the model services) and
calls the model services like the api does. A worker that dies is started again after
``restart_delay_s``; the api's shutdown stops it (SIGTERM, then SIGKILL), and on Linux the kernel
sends it SIGTERM if the api process dies without a shutdown (``PR_SET_DEATHSIG``, services/process.py). In production
the workers are their own containers and this is off (``CV_JOBS_EMBEDDED_WORKER``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from typing import Any

from services.config import ServingSettings
from services.process import die_with_parent

log = logging.getLogger(__name__)


def worker_command(settings: ServingSettings, *, hostname: str = "cv-jobs@%h", beat: bool = False) -> list[str]:
    """The ``celery worker`` command line for ``settings``; with ``beat``, it also runs Celery beat (one worker only).

    Beat sends the periodic tasks (services/jobs/celery_factory.py ``beat_schedule``: the drift check); it must run
    once per deployment, so only a lone worker (the embedded one, the native topology's) embeds it.
    """
    beat_args = ["--beat", "--schedule", str(settings.beat_schedule_path)] if beat else []
    return [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "services.jobs.celery_app",
        "worker",
        "--queues",
        settings.jobs_queue,
        "--concurrency",
        str(settings.jobs_worker_concurrency),
        "--pool",
        "prefork",
        "--hostname",
        hostname,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *beat_args,
    ]


class EmbeddedWorker:
    """Keeps one worker process running until :meth:`stop`."""

    def __init__(self, command: list[str], *, restart_delay_s: float = 2.0, stop_timeout_s: float = 15.0) -> None:
        self.command = command
        self.restart_delay_s = restart_delay_s
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def describe(self) -> dict[str, Any]:
        return {"status": "ok" if self.pid else "down", "pid": self.pid, "restarts": self.restarts}

    def start(self) -> EmbeddedWorker:
        # The thread that forks is the one PR_SET_DEATHSIG watches: it lives as long as the api process.
        self._thread = threading.Thread(target=self._supervise, name="job-worker-supervisor", daemon=True)
        self._thread.start()
        return self

    def _supervise(self) -> None:
        preexec = die_with_parent()
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = subprocess.Popen(self.command, preexec_fn=preexec)
            log.info("job worker started", extra={"pid": self._process.pid})
            code = self._process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            log.warning("job worker exited; starting another", extra={"code": code, "restarts": self.restarts})
            self._stopping.wait(self.restart_delay_s)

    def stop(self) -> None:
        """Stop the worker (warm shutdown: running tasks finish or go back to the queue) and do not restart it."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("job worker did not stop; killing it", extra={"pid": process.pid})
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("job worker stopped")
