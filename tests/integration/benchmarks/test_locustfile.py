"""The locust load test runs headless against a real server and every task of the tier's mix succeeds.

A server of its own, with its embedded job worker: the batch jobs the users submit must be worked, and must not
sit in the shared ``server``'s queue (its health would say ``degraded`` to the tests after this one).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server, start_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def own_server(model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("locust-server")
    env = {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data), "CV_JOBS_EMBEDDED_WORKER": "true"}
    running = start_server(data / "server.log", env)
    yield running
    running.stop()


def _run(server: Server, tmp_path: Path, tier: str) -> dict[str, dict[str, str]]:
    locust = str(Path(sys.executable).with_name("locust"))
    prefix = tmp_path / tier
    command = [
        locust, "-f", str(REPO / "benchmarks" / "locustfile.py"), "--headless", "-u", "4", "-r", "4", "-t", "8s",
        "--host", server.url, "--tier", tier, "--job-wait-s", "1", "--csv", str(prefix), "--only-summary",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (Path(f"{prefix}_stats.csv")).is_file(), done.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_pro_mix_classifies_detects_searches_and_submits_jobs(own_server: Server, tmp_path: Path) -> None:
    stats = _run(own_server, tmp_path, "pro")
    for name in ("classify", "detect", "search", "batch (job)"):
        assert int(stats[name]["Request Count"]) > 0, f"{name} never ran: {sorted(stats)}"
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]


def test_free_mix_only_calls_what_a_free_key_may(own_server: Server, tmp_path: Path) -> None:
    stats = _run(own_server, tmp_path, "free")
    assert set(stats) - {"Aggregated"} <= {"classify", "detect"}
    assert int(stats["Aggregated"]["Request Count"]) > 0
