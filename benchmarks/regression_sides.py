"""The two sides of the regression check: the baseline's temporary worktree, each side's own model store, and
one bare-model round of a side in a subprocess running that side's code (benchmarks/regression_side.py).

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


def bare_round(side: Side, models: list[str], calls: int, warmup: int) -> dict[str, Any]:
    """One bare-model round of ``side`` in a fresh process running the side's code; its JSON."""
    cmd = [sys.executable, "-P", "-m", "benchmarks.regression_side", "--root", str(side.root)]
    cmd += ["--models", *models, "--calls", str(calls), "--warmup", str(warmup)]
    env = {**os.environ, **side.env(), "PYTHONPATH": str(HARNESS)}  # the harness; --root goes first inside
    done = subprocess.run(cmd, cwd=side.root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RegressionError(f"{side.name}: bare round failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])["bare"]
    return result
