"""kernel/paths.py: where the repository is, and paths as reports quote them."""

from __future__ import annotations

from pathlib import Path

from kernel.paths import REPO_ROOT, display_path


def test_paths_are_shown_relative_to_the_repository_when_inside_it(tmp_path: Path) -> None:
    assert display_path(REPO_ROOT / "training" / "x.yaml") == "training/x.yaml"
    assert display_path(str(REPO_ROOT / "training" / "x.yaml")) == "training/x.yaml"
    assert display_path(tmp_path / "x.yaml") == str(tmp_path / "x.yaml")
