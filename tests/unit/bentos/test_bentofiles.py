"""The bentofiles: one per model service and one for the api, offline builds, the project's dependencies.

That each one builds, and packages its models' production versions, is tests/integration/bentos/test_bento_build.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.models.catalogue import CATALOGUE

REPO = Path(__file__).resolve().parents[3]
BENTOFILES = sorted([*REPO.glob("bentos/*/bentofile.yaml"), REPO / "bentofile.yaml"])


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_one_bentofile_per_model_service_and_one_for_the_api() -> None:
    services = {_load(p)["service"] for p in REPO.glob("bentos/*/bentofile.yaml")}
    assert services == {e.service for e in CATALOGUE} | {"services.api:Api"}


def test_the_top_level_bentofile_is_the_apis() -> None:
    assert _load(REPO / "bentofile.yaml") == _load(REPO / "bentos" / "api" / "bentofile.yaml")


@pytest.mark.parametrize("path", BENTOFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_bentofile_builds_offline_with_the_projects_dependencies(path: Path) -> None:
    python = _load(path)["python"]
    assert python["lock_packages"] is False  # locking resolves against the index
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert python["packages"] == dependencies


@pytest.mark.parametrize("path", BENTOFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_bentofile_packages_one_version_per_model(path: Path) -> None:
    names = [tag.partition(":")[0] for tag in _load(path)["models"]]
    assert len(names) == len(set(names))
