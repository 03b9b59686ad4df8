"""The commit a report records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from training.provenance import git_commit


def test_git_commit_inside_and_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = git_commit()
    if commit is not None:  # a checkout; an exported tree has no .git
        assert re.fullmatch(r"[0-9a-f]{40}", commit)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit() is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_commit() is None
