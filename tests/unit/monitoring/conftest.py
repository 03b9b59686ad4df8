"""Paths of monitoring/, and the Prometheus tools (Debian's `prometheus` and `prometheus-alertmanager`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"


def tool(name: str) -> str:
    """The path of ``name``; skipped when absent, failed instead under TEST_REQUIRE_SERVERS (.ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager; .ci/run does)"
        if os.environ.get("TEST_REQUIRE_SERVERS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return tool("amtool")
