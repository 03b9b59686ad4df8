"""benchmarks/peers.py in --quick mode against real peers on loopback: it measures, checks answers, writes a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import peers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_run_measures_two_peers_and_writes_the_report(model_store: list[str], tmp_path: Path) -> None:
    out = tmp_path / "peers.md"
    only = ["ort-int8", "ort-detector"]
    argv = ["--quick", "--only", *only, "--rounds", "2", "--out", str(out)]

    assert peers.main(argv) == 0

    results = json.loads(out.with_suffix(".json").read_text())
    assert list(results["servers"]) == only
    classify = results["servers"]["ort-int8"]["routes"]["classify"]
    assert set(classify) == {"1", "16"}
    assert classify["16"]["statuses"] == {"200": 24}
    assert classify["1"]["answer"].startswith("Egyptian cat")  # the fine-tune's answer for chelsea
    assert classify["16"]["server_cpu_s"] > 0
    detect = results["servers"]["ort-detector"]["routes"]["detect"]["1"]
    assert detect["statuses"] == {"200": 10} and detect["answer"].endswith("best class 0")  # the astronaut
    (second,) = results["repeats"]  # round 2: the goals' servers again, the other way round
    assert list(second) == only[::-1]
    assert second["ort-int8"]["routes"]["classify"]["16"]["statuses"] == {"200": 24}
    report = out.read_text()
    assert "| FastAPI + ONNX Runtime, INT8 file |" in report
    assert "2 rounds" in report
    assert out.with_suffix(".png").stat().st_size > 0
