"""The compose files: `docker-compose config` accepts both, and production's services are health-checked, limited,
restarted, on the internal network and given their secrets by the environment only.

(tests/unit/deploy/test_topology.py keeps docker-compose.prod.yml and the native topology in step;
test_dockerfile.py, its images and commands.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from deploy.topology import REPO

FILES = ("docker-compose.yml", "docker-compose.prod.yml")
# What the production file requires from the environment (all secrets but CV_MIRROR_DIR): dummies here.
REQUIRED = {
    "POSTGRES_PASSWORD": "dummy",
    "CV_GATEWAY_KEY_HASH_SECRET": "dummy",
    "CV_GATEWAY_SIGNING_SECRET": "dummy",
    "GRAFANA_ADMIN_PASSWORD": "dummy",
    "CV_MIRROR_DIR": "/mirror",
}
PROD: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())
SERVICES: dict[str, Any] = PROD["services"]
ONE_SHOT = {"migrate", "import-models"}
EDGE = {"traefik", "grafana"}  # on the edge network as well; everything else is internal only
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("TEST_REQUIRE_SERVERS"):
            pytest.fail("docker-compose is not installed (.ci/run installs it)")
        pytest.skip("docker-compose is not installed")
    return found


@pytest.mark.parametrize("name", FILES)
def test_docker_compose_config_accepts_the_file(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED} | REQUIRED
    done = subprocess.run(
        [_docker_compose(), "-f", name, "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_production_refuses_to_start_without_its_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED} | REQUIRED
    del env["POSTGRES_PASSWORD"]
    done = subprocess.run(
        [_docker_compose(), "-f", "docker-compose.prod.yml", "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "set POSTGRES_PASSWORD" in done.stderr


def test_no_secret_has_a_default() -> None:
    text = (REPO / "docker-compose.prod.yml").read_text()
    for variable in re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)([^}]*)\}", text):
        assert variable[1].startswith(":?"), variable[0]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_each_long_running_service_is_health_checked_restarted_and_limited(name: str) -> None:
    service = SERVICES[name]
    assert service["healthcheck"]["test"][0] == "CMD" and not service["healthcheck"].get("disable")
    assert service["restart"] == "unless-stopped"
    limits = service["deploy"]["resources"]["limits"]
    assert limits["cpus"] and limits["memory"]


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_jobs_run_once_within_limits(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "no" and service["deploy"]["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_dependency_waits_for_health_or_completion(name: str) -> None:
    for dependency, condition in SERVICES[name].get("depends_on", {}).items():
        expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert condition == {"condition": expected}, f"{name} -> {dependency}"


def test_only_the_edge_is_outside_the_internal_network() -> None:
    assert PROD["networks"]["internal"]["internal"] is True
    for name, service in SERVICES.items():
        if name == "import-models":
            assert service["network_mode"] == "none"  # it reads mounted files only
            continue
        expected = ["edge", "internal"] if name in EDGE else ["internal"]
        assert service["networks"] == expected, name
        if name not in EDGE:
            assert "ports" not in service, name


def test_state_lives_in_named_volumes() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(("./gateway/", "./monitoring/")) or source == "${CV_MIRROR_DIR":
                assert volume.endswith(":ro"), f"{name}: {volume}"  # configuration and the mirror, read-only
            else:
                assert source in PROD["volumes"], f"{name}: {volume}"


def test_the_import_step_has_what_the_detector_build_needs() -> None:
    """onnx is in the importer image (the `import` extra); COCO128 comes from the mounted mirror's datasets/."""
    importer = SERVICES["import-models"]
    assert importer["build"]["target"] == "importer" and "user" not in importer
    env = importer["environment"]
    assert env["CV_MODEL_MIRROR_DIR"] == "/mirror/models" and env["CV_DATASETS_MIRROR_DIR"] == "/mirror/datasets"
    assert any(v.startswith("${CV_MIRROR_DIR") and v.split(":")[-2] == "/mirror" for v in importer["volumes"])
    extras = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^import = \["onnx[^"]*"\]', extras, re.MULTILINE)


def test_development_runs_the_api_on_local_defaults_with_the_code_mounted() -> None:
    dev = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    api = dev["api"]
    assert api["build"]["target"] == "api" and api["ports"]
    assert api["environment"]["CV_ENVIRONMENT"] == "local"
    assert not any(k in api["environment"] for k in ("CV_DATABASE_URL", "CV_REDIS_URL"))  # SQLite, in-process cache
    assert {"./kernel:/srv/app/kernel:ro", "./services:/srv/app/services:ro"} <= set(api["volumes"])
    assert api["depends_on"] == {"import-models": {"condition": "service_completed_successfully"}}
