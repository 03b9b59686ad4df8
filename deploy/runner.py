"""Start, watch and stop the processes of a :class:`~deploy.topology.Plan`.

Each process gets its own session (so a stop reaches its children: ``bentoml serve`` forks), its own
log file under ``run_dir/logs/`` and, for BentoML processes, its own ``BENTOML_HOME`` that shares the
model store: a BentoML worker keeps its Prometheus multiprocess files in ``$BENTOML_HOME/prometheus_multiproc_dir``,
empties it when it starts and exposes every file there, so processes on one home would wipe each other's metrics and
each would report all of theirs. Nothing is restarted: a process that dies
stays dead, which is what the replica-kill test needs; compose's ``restart:`` is the production answer.
Each process gets SIGTERM from the kernel if the runner dies without stopping them (services/process.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

from deploy.topology import REPO, Plan, ProcessSpec, TopologyConfig, render_prometheus, render_traefik
from services.process import die_with_parent


class TopologyError(RuntimeError):
    """A process failed to start or to become ready."""


def own_bentoml_home(shared: Path, own: Path) -> Path:
    """A BentoML home of one process that shares ``shared``'s model store and bentos."""
    own.mkdir(parents=True, exist_ok=True)
    for name in ("models", "bentos"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        if not (own / name).exists():
            (own / name).symlink_to(shared / name, target_is_directory=True)
    return own


@dataclass
class Running:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    handle: IO[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)


class Topology:
    """The running topology: ``start()``, ``kill(name)``, ``stop()``; a context manager."""

    def __init__(self, config: TopologyConfig, plan: Plan) -> None:
        self.config = config
        self.plan = plan
        self.running: dict[str, Running] = {}
        self.log_dir = config.run_dir / "logs"

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 240.0) -> None:
        """Run the one-shot processes, then start the rest at once and wait until every one is ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The shared data folder (a volume in compose): beat writes its schedule there before anything else would.
        (self.config.run_dir / "data").mkdir(parents=True, exist_ok=True)
        render_traefik(self.config, self.plan)
        if self.config.monitoring:
            render_prometheus(self.config, self.plan)
        try:
            for spec in self.plan.processes:
                if spec.oneshot:
                    self._run_to_completion(spec, timeout_s)
            for spec in self.plan.processes:
                if not spec.oneshot:
                    self.running[spec.name] = self._spawn(spec)
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _env(self, spec: ProcessSpec) -> dict[str, str]:
        env = {**os.environ, **spec.env}
        if spec.bentoml:
            env["BENTOML_HOME"] = str(
                own_bentoml_home(self.config.bentoml_home, self.config.run_dir / "homes" / spec.name)
            )
        return env

    def _spawn(self, spec: ProcessSpec) -> Running:
        log_path = self.log_dir / f"{spec.name}.log"
        handle = log_path.open("ab")
        process = subprocess.Popen(
            spec.argv,
            cwd=REPO,
            env=self._env(spec),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # a runner killed outright takes its processes with it
        )
        return Running(spec, process, log_path, handle)

    def _run_to_completion(self, spec: ProcessSpec, timeout_s: float) -> None:
        run = self._spawn(spec)
        try:
            code = run.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            run.signal(signal.SIGKILL)
            raise TopologyError(f"{spec.name} did not finish in {timeout_s:.0f}s") from None
        finally:
            run.handle.close()
        if code != 0:
            raise TopologyError(f"{spec.name} exited with {code}:\n{run.log()[-3000:]}")

    def _ready(self, run: Running, client: httpx.Client) -> bool:
        if run.spec.health_url:
            try:
                return client.get(run.spec.health_url).status_code == 200
            except httpx.HTTPError:
                return False
        return run.spec.ready_log is None or run.spec.ready_log in run.log()

    def _wait_ready(self, timeout_s: float) -> None:
        waiting = set(self.running)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                for name in sorted(waiting):
                    run = self.running[name]
                    if not run.alive():
                        raise TopologyError(f"{name} exited with {run.process.returncode}:\n{run.log()[-3000:]}")
                    if self._ready(run, client):
                        waiting.discard(name)
                if waiting and time.monotonic() > deadline:
                    logs = "\n".join(f"--- {n}\n{self.running[n].log()[-1500:]}" for n in sorted(waiting))
                    raise TopologyError(f"not ready after {timeout_s:.0f}s: {sorted(waiting)}\n{logs}")
                time.sleep(0.5)

    def kill(self, name: str) -> None:
        """SIGKILL one process and every process under it, as a crashed container would go.

        Not just its process group: BentoML's workers run in sessions of their own, and would go on
        serving on the inherited socket after their supervisor died.
        """
        run = self.running[name]
        try:
            family = [*psutil.Process(run.process.pid).children(recursive=True), psutil.Process(run.process.pid)]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(family, timeout=10)
        run.process.wait(timeout=10)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM everything (the edge first, so no new work arrives), then SIGKILL whatever is left under it."""
        order = sorted(self.running.values(), key=lambda r: r.spec.name != "traefik")
        family: list[psutil.Process] = []
        for run in order:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += psutil.Process(run.process.pid).children(recursive=True)
            run.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for run in order:
            try:
                run.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.signal(signal.SIGKILL)
                run.process.wait(timeout=10)
            run.handle.close()
        _, left = psutil.wait_procs(family, timeout=max(0.1, deadline - time.monotonic()))
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.running.clear()

    def log(self, name: str) -> str:
        """Everything process ``name`` wrote so far."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")
