"""requirements.txt, the pinned lock of the serving install, agrees with pyproject.toml (``make lock`` re-makes it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]

# What each extra named in pyproject's dependencies brings (from the packages' own metadata). A new extra fails
# test_every_extra_is_known until it is listed here.
EXTRA_PACKAGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("celery", "redis"): ("kombu", "redis"),
    ("psycopg", "binary"): ("psycopg-binary",),
}


def direct_dependencies() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def pins() -> dict[NormalizedName, Version]:
    """``name==version`` lines by normalised name; anything else in the file fails here."""
    pinned: dict[NormalizedName, Version] = {}
    for number, raw in enumerate((REPO / "requirements.txt").read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert [s.operator for s in specs] == ["=="], f"requirements.txt:{number} is not name==version: {raw!r}"
        name = canonicalize_name(requirement.name)
        assert name not in pinned, f"requirements.txt:{number} pins {name} a second time"
        pinned[name] = Version(specs[0].version)
    return pinned


def test_requirements_txt_says_how_it_is_made() -> None:
    header = (REPO / "requirements.txt").read_text().split("\n\n", 1)[0]
    assert "make lock" in header and "pip freeze" in header
    assert "\nlock:" in (REPO / "Makefile").read_text()


def test_the_project_itself_is_not_pinned() -> None:
    assert "cv-api" not in pins()


@pytest.mark.parametrize("requirement", direct_dependencies(), ids=str)
def test_every_direct_dependency_is_pinned_within_its_specifier(requirement: Requirement) -> None:
    pinned = pins()
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{requirement} is in pyproject.toml but not in requirements.txt: run `make lock`"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f"requirements.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}: run `make lock`"
    )
    for extra in sorted(requirement.extras):
        for package in EXTRA_PACKAGES.get((name, extra), ()):
            assert canonicalize_name(package) in pinned, f"{requirement} needs {package}, not in requirements.txt"


def test_every_extra_is_known() -> None:
    used = {(canonicalize_name(r.name), extra) for r in direct_dependencies() for extra in r.extras}
    assert used <= set(EXTRA_PACKAGES), f"say what these extras bring in EXTRA_PACKAGES: {used - set(EXTRA_PACKAGES)}"
