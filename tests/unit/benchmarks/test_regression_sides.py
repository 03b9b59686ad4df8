"""benchmarks/regression_sides.py: the baseline worktree comes and goes, each side's imports run from its root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.regression_sides import RegressionError, Side, baseline_worktree, import_models, share_build_cache


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository of two commits: version.txt says 1, then 2."""
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    for version in ("1", "2"):
        (path / "version.txt").write_text(version)
        _git(path, "add", "version.txt")
        _git(path, "commit", "-q", "-m", f"v{version}")
    return path


def _worktrees(repo: Path) -> list[str]:
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree")]


def test_the_baseline_is_checked_out_detached_and_removed_afterwards(repo: Path) -> None:
    with baseline_worktree(repo, "HEAD~1") as (path, commit):
        assert (path / "version.txt").read_text() == "1"
        assert commit == _git(repo, "rev-parse", "HEAD~1").strip()
        assert len(_worktrees(repo)) == 2
    assert not path.exists() and not path.parent.exists()
    assert len(_worktrees(repo)) == 1
    assert (repo / "version.txt").read_text() == "2"  # the working tree is untouched


def test_the_worktree_is_removed_when_the_measurement_fails(repo: Path) -> None:
    with pytest.raises(RuntimeError, match="measurement failed"), baseline_worktree(repo, "HEAD~1") as (path, _):
        (path / "scratch.txt").write_text("left behind by a failing run")  # makes the worktree dirty
        raise RuntimeError("measurement failed")
    assert not path.parent.exists()
    assert len(_worktrees(repo)) == 1


def test_an_unknown_ref_is_refused_before_anything_is_created(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(RegressionError, match="rev-parse"), baseline_worktree(repo, "no-such-ref"):
        pass
    assert len(_worktrees(repo)) == 1


def _side(tmp_path: Path, root: Path) -> Side:
    return Side("baseline", root, tmp_path / "home", tmp_path / "data")


def test_a_side_gets_its_own_store_data_and_code_and_no_cache(tmp_path: Path) -> None:
    env = _side(tmp_path, tmp_path / "src").env()
    assert env["BENTOML_HOME"] == str(tmp_path / "home") and env["CV_DATA_DIR"] == str(tmp_path / "data")
    assert env["PYTHONPATH"] == str(tmp_path / "src") and env["CV_CACHE_ENABLED"] == "false"


def test_the_detector_build_cache_is_shared_by_a_link_or_not_at_all(tmp_path: Path) -> None:
    side = _side(tmp_path, tmp_path)
    share_build_cache(side, None)
    assert not (side.data / "models").exists()
    share_build_cache(side, tmp_path / "cache")
    link = side.data / "models" / "detector"
    assert link.is_symlink() and link.resolve() == (tmp_path / "cache").resolve()
    share_build_cache(side, tmp_path / "cache")  # again: the link is kept


def _script(root: Path, model: str, body: str) -> None:
    path = root / "bentos" / model / "import_model.py"
    path.parent.mkdir(parents=True)
    path.write_text(body)


def test_each_import_script_runs_from_the_side_root_with_the_side_env(tmp_path: Path) -> None:
    root = tmp_path / "src"
    body = "import os, pathlib\npathlib.Path('ran.txt').write_text(os.environ['BENTOML_HOME'])\n"
    _script(root, "classifier", body)
    import_models(_side(tmp_path, root), ["classifier"], None)
    assert (root / "ran.txt").read_text() == str(tmp_path / "home")


def test_a_failing_import_names_the_side_the_model_and_the_error(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _script(root, "detector", "raise SystemExit('no mirror file')\n")
    with pytest.raises(RegressionError, match=r"baseline: import of detector failed .*\n.*no mirror file"):
        import_models(_side(tmp_path, root), ["detector"], None)
    with pytest.raises(RegressionError, match="not found"):
        import_models(_side(tmp_path, root), ["embedder"], None)
