"""A server under test on loopback: start it, wait for its health route and for it to settle, stop its process group;
the CPU its process tree and the machine used.

benchmarks/peers.py and benchmarks/peers_profile.py start every server through :func:`launch`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """One server to measure: how to start it and which of its paths answer which route."""

    name: str
    label: str
    command: list[str]
    routes: dict[str, str]  # route -> path
    health: str
    env: dict[str, str] = field(default_factory=dict)
    concurrencies: tuple[int, ...] = ()  # the load concurrencies measured (besides 1, unless skip_sequential)
    skip_sequential: bool = False


@contextmanager
def launch(target: Target, workdir: Path, port: int, timeout: float) -> Iterator[tuple[str, psutil.Process]]:
    """Start ``target`` on 127.0.0.1:``port`` and wait for its health route; stop its process group afterwards."""
    log_path = workdir / f"{target.name}.log"
    command = [part.replace("{port}", str(port)) for part in target.command]
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", **target.env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url + target.health, process, timeout, log_path)
        yield url, psutil.Process(process.pid)
    finally:
        _stop(process)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def tree_cpu_seconds(root: psutil.Process) -> float:
    """User + system CPU seconds of ``root`` and every live descendant."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def settle(root: psutil.Process, quiet_cores: float = 0.05, window_s: float = 1.0, timeout_s: float = 60.0) -> float:
    """Wait until ``root``'s tree uses under ``quiet_cores`` over ``window_s`` (at most ``timeout_s``); seconds waited.

    Healthy is not settled: the product's embedded job worker is still importing for a second or two after the api
    answers its health route, which the first measured run would otherwise share the cores with.
    """
    started = time.monotonic()
    last = tree_cpu_seconds(root)
    while time.monotonic() - started < timeout_s:
        time.sleep(window_s)
        now = tree_cpu_seconds(root)
        if now - last < quiet_cores * window_s:
            break
        last = now
    return time.monotonic() - started


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))
