"""The locust load test runs headless against the real server and every task of the tier's mix succeeds."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.server import Server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


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


def test_pro_mix_classifies_detects_searches_and_submits_jobs(server: Server, tmp_path: Path) -> None:
    stats = _run(server, tmp_path, "pro")
    for name in ("classify", "detect", "search", "batch (job)"):
        assert int(stats[name]["Request Count"]) > 0, f"{name} never ran: {sorted(stats)}"
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]


def test_free_mix_only_calls_what_a_free_key_may(server: Server, tmp_path: Path) -> None:
    stats = _run(server, tmp_path, "free")
    assert set(stats) - {"Aggregated"} <= {"classify", "detect"}
    assert int(stats["Aggregated"]["Request Count"]) > 0
