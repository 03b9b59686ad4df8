"""benchmarks/serving_report.py: the committed report is what the code renders from the committed results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import stats, table
from benchmarks.serving_report import derived, render, targets

REPORT = Path(__file__).resolve().parents[3] / "benchmarks" / "reports" / "serving.md"


def _as_measured(node: Any, key: str = "") -> Any:
    """JSON made the concurrency and batch-size keys strings; the benchmark holds them as ints (not status codes)."""
    if isinstance(node, dict):
        return {(int(k) if k.isdigit() and key != "statuses" else k): _as_measured(v, k) for k, v in node.items()}
    return node


def _results() -> dict[str, Any]:
    return _as_measured(json.loads(REPORT.with_suffix(".json").read_text()))  # type: ignore[no-any-return]


def test_the_report_renders_again_from_its_results() -> None:
    assert render(_results()) == REPORT.read_text()


def test_derived_figures_and_targets_come_from_the_measurements() -> None:
    results = _results()
    classify = results["on"]["classify"]
    speedup = classify[32]["throughput"] / results["off"]["classify"][32]["throughput"]
    assert derived(results)["classify"]["batching speed-up at concurrency 32 (ON / OFF req/s)"] == speedup
    met = {key: (value, ok) for key, _, _, value, ok in targets(results)}
    detect_p50 = results["on"]["detect"][1]["p50"]
    assert met["p50:detect"] == (detect_p50, detect_p50 <= 35.0)
    assert met["p50:classify"] == (classify[1]["p50"], classify[1]["p50"] <= 15.0)
    assert met["speedup:classify"] == (speedup, speedup >= 2.5)


def test_statistics_and_tables() -> None:
    assert stats([1.0, 2.0, 3.0, 4.0]) == pytest.approx({"n": 4, "mean": 2.5, "p50": 2.5, "p99": 3.97})
    assert table(["a", "b"], [[1, 2.25]]) == "| a | b |\n|---|---|\n| 1 | 2.2 |"
