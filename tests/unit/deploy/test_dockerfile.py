"""The Dockerfile: multi-stage, one non-root target with a health check per deployable, dependencies before code.

hadolint checks the rest (`make lint`); what it cannot know is which stages are images and what they must hold.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from deploy.topology import REPO

DOCKERFILES = sorted(REPO.glob("**/Dockerfile*"))
# The images docker-compose.prod.yml runs (one per deployable); `importer` is a one-shot job.
TARGETS = ("api", "classifier", "detector", "embedder", "auth", "worker", "importer")
ONE_SHOT = {"importer"}
CODE = ("kernel", "services", "gateway", "training", "bentos", "artifacts")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """The file's instructions, continuation lines joined, comments and blank lines dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _stages(path: Path) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in _instructions(path):
        if keyword == "FROM":
            words = rest.split()
            name = words[words.index("AS") + 1] if "AS" in words else f"#{len(stages)}"
            current = stages[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((keyword, rest))
    return stages


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    chain = [stages[name]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def _last(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    values = [rest for stage in _chain(stages, name) for kw, rest in stage.instructions if kw == keyword]
    return values[-1] if values else None


def _cmd(stages: dict[str, Stage], name: str) -> list[str]:
    cmd = _last(stages, name, "CMD")
    assert cmd is not None and cmd.startswith("["), f"{name}: CMD in exec form"
    return list(json.loads(cmd))


MAIN = _stages(REPO / "Dockerfile")


def test_there_is_a_dockerfile() -> None:
    assert REPO / "Dockerfile" in DOCKERFILES


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_is_multi_stage_with_a_builder(path: Path) -> None:
    stages = _stages(path)
    assert len(stages) >= 2
    assert "builder" in stages


@pytest.mark.parametrize("target", TARGETS)
def test_each_deployable_is_a_target_run_by_a_non_root_user(target: str) -> None:
    user = _last(MAIN, target, "USER")
    assert user is not None, f"{target} runs as root"
    assert user.split(":")[0] not in {"root", "0"}, target


@pytest.mark.parametrize("target", TARGETS)
def test_each_deployable_has_a_health_check(target: str) -> None:
    check = _last(MAIN, target, "HEALTHCHECK")
    assert check is not None, target
    if target in ONE_SHOT:
        assert check == "NONE"
    else:
        assert "CMD" in check and "NONE" not in check, target


@pytest.mark.parametrize("target", TARGETS)
def test_the_runtime_has_no_compiler_and_no_pip_cache(target: str) -> None:
    chain = _chain(MAIN, target)
    assert chain[0].base.endswith("-slim-bookworm"), "a slim base: no compiler"
    env = " ".join(rest for stage in chain for kw, rest in stage.instructions if kw == "ENV")
    no_cache_env = "PIP_NO_CACHE_DIR=1" in env
    for stage in chain:
        for keyword, rest in stage.instructions:
            if keyword == "RUN":
                assert not re.search(r"\b(apt-get|apt) install\b.*\b(gcc|g\+\+|build-essential|clang)\b", rest)
                if "pip install" in rest:
                    assert "--no-cache-dir" in rest or no_cache_env, rest
            if keyword == "COPY":
                assert not re.match(r"^(--\S+\s+)*\.\s", rest), "COPY . copies the whole context"


@pytest.mark.parametrize("target", TARGETS)
def test_dependencies_are_installed_before_the_code_is_copied(target: str) -> None:
    steps = [(kw, rest) for stage in _chain(MAIN, target) for kw, rest in stage.instructions]
    install = max(i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "pip install" in rest)
    code = [i for i, (kw, rest) in enumerate(steps) if kw == "COPY" and rest.split()[0] in CODE]
    assert code and min(code) > install, target


COMPOSE = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())["services"]


def test_each_compose_service_built_here_is_a_dockerfile_target() -> None:
    built = {name: s["build"]["target"] for name, s in COMPOSE.items() if isinstance(s.get("build"), dict)}
    assert set(built.values()) == set(TARGETS) and set(built.values()) <= set(MAIN)


@pytest.mark.parametrize("name", [n for n, s in COMPOSE.items() if isinstance(s.get("build"), dict)])
def test_compose_runs_its_images_own_command(name: str) -> None:
    """A service's command is its target's CMD (migrate runs in the api image: its command is its own)."""
    service = COMPOSE[name]
    if name == "migrate":
        return
    command = service.get("command")
    cmd = _cmd(MAIN, service["build"]["target"])
    if command is None:
        return
    if cmd[:2] == ["sh", "-c"]:
        assert shlex.split(command[-1]) == shlex.split(cmd[-1]), name
    else:
        assert command == cmd, name
