"""The two sides of the regression check: the baseline's temporary worktree, each side's own model store, and
the bare-model blocks, timed in one process per side running that side's code (benchmarks/regression_side.py).

Both sides run on this interpreter: dependency changes between the two refs are not isolated.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

log = logging.getLogger("benchmarks.regression")
HARNESS = Path(__file__).resolve().parents[1]  # the checkout this module is in: it drives both sides
MODELS = ("classifier", "detector", "embedder")


class RegressionError(RuntimeError):
    """A side could not be prepared or measured (the check cannot give a verdict)."""


@dataclass(frozen=True)
class Side:
    """One checkout under test with its own BentoML home and data folder."""

    name: str  # "baseline" or "tree"
    root: Path
    home: Path
    data: Path

    def env(self) -> dict[str, str]:
        """What the side's processes get on top of this environment: its store, its data, its code."""
        return {
            "BENTOML_HOME": str(self.home),
            "CV_DATA_DIR": str(self.data),
            "PYTHONPATH": str(self.root),
            "CV_CACHE_ENABLED": "false",
            "BENTOML_DO_NOT_TRACK": "true",
        }


def share_mirrors() -> Path:
    """Both sides read the mirrors this checkout reads (a /tmp worktree has none beside it): set in this environment,
    which the sides' processes inherit. Returns the detector build cache the sides may share (CV_DATA_DIR's)."""
    from services.config import ServingSettings

    settings = ServingSettings()
    os.environ.setdefault("CV_MODEL_MIRROR_DIR", str(settings.model_mirror_dir))
    os.environ.setdefault("CV_DATASETS_MIRROR_DIR", str(settings.datasets_mirror_dir))
    return settings.data_dir / "models" / "detector"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RegressionError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def baseline_worktree(repo: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """``ref`` checked out (detached) in a temporary worktree of ``repo``: (its path, its commit).

    The worktree and its folder are removed afterwards, whatever happened inside.
    """
    commit = git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    folder = Path(tempfile.mkdtemp(prefix="cv-regression-baseline-"))
    path = folder / "src"
    try:
        git(repo, "worktree", "add", "--detach", str(path), commit)
        yield path, commit
    finally:
        if path.exists():
            done = subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False)
            if done.returncode != 0:
                log.warning("git worktree remove %s failed; removing the folder", path)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=False)


def _run(cmd: list[str], side: Side, what: str) -> str:
    done = subprocess.run(
        cmd, cwd=side.root, env={**os.environ, **side.env()}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-3000:]
        raise RegressionError(f"{side.name}: {what} failed with exit code {done.returncode}:\n{tail}")
    return done.stdout


def share_build_cache(side: Side, cache: Path | None) -> None:
    """Point the side's detector build cache at ``cache`` (files keyed by source, recipe and build revision)."""
    if cache is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    link = side.data / "models" / "detector"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(cache, target_is_directory=True)


def import_models(side: Side, models: list[str], build_cache: Path | None) -> None:
    """The side's own bentos/<model>/import_model.py, run from its root into its own BENTOML_HOME."""
    share_build_cache(side, build_cache)
    for model in models:
        script = side.root / "bentos" / model / "import_model.py"
        if not script.is_file():
            raise RegressionError(f"{side.name}: {script} not found")
        log.info("%s: importing %s", side.name, model)
        _run([sys.executable, str(script)], side, f"import of {model}")


class SideProcess:
    """benchmarks/regression_side.py --serve for one side: its sessions loaded once, timed block by block."""

    def __init__(self, side: Side, models: list[str], log_path: Path) -> None:
        cmd = [sys.executable, "-P", "-m", "benchmarks.regression_side", "--root", str(side.root), "--serve"]
        env = {**os.environ, **side.env(), "PYTHONPATH": str(HARNESS)}  # the harness; --root goes first inside
        self.side, self.log_path, self._log = side, log_path, log_path.open("w")
        self.process = subprocess.Popen(
            [*cmd, "--models", *models], cwd=side.root, env=env, stdin=PIPE, stdout=PIPE, stderr=self._log, text=True
        )
        self.keys: list[str] = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RegressionError(
                f"{self.side.name}: the bare-model process ended:\n{self.log_path.read_text()[-3000:]}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def time(self, key: str, calls: int) -> list[float]:
        """Milliseconds of ``calls`` calls of ``key`` (``model/precision``)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"key": key, "calls": calls}) + "\n")
        self.process.stdin.flush()
        samples: list[float] = self._read()["samples"]
        return samples

    def close(self) -> None:
        with suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def bare_blocks(sides: list[Side], models: list[str], plan: Any, workdir: Path) -> dict[str, dict[str, list[float]]]:
    """Both sides' processes up at once; per block and per model/precision, one side then the other (the order
    flips every block). Returns each side's samples per ``model/precision``."""
    with ExitStack() as stack:
        procs = {}
        for side in sides:
            procs[side.name] = SideProcess(side, models, workdir / f"bare-{side.name}.log")
            stack.callback(procs[side.name].close)
        keys = sorted(set.intersection(*(set(p.keys) for p in procs.values())))
        for proc in procs.values():
            for key in keys:
                proc.time(key, plan.bare_warmup)
        out: dict[str, dict[str, list[float]]] = {name: {key: [] for key in keys} for name in procs}
        for block in range(plan.bare_blocks):
            order = list(procs) if block % 2 == 0 else list(procs)[::-1]
            for key in keys:
                for name in order:
                    out[name][key] += procs[name].time(key, plan.bare_calls)
        log.info("bare: %d blocks of %d calls per side and model/precision", plan.bare_blocks, plan.bare_calls)
        for name, proc in procs.items():
            for key in sorted(set(proc.keys) - set(keys)):  # a precision only one side has: measured alone
                out[name][key] = proc.time(key, plan.bare_blocks * plan.bare_calls)
        return out
