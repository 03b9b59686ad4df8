"""benchmarks/peers_report.py: the committed report is what the code renders from the committed results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.peers_report import BASELINE, PRODUCT, batching, goals, render

REPORT = Path(__file__).resolve().parents[3] / "benchmarks" / "reports" / "peers.md"


def _results() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(REPORT.with_suffix(".json").read_text())
    return results


def test_the_report_renders_again_from_its_results() -> None:
    assert render(_results()) == REPORT.read_text()


def test_goals_compare_the_product_with_each_routes_peer() -> None:
    results = _results()
    found = {goal: (ours, theirs, met) for goal, ours, theirs, _, met in goals(results)}
    ours = results["servers"][PRODUCT]["routes"]["classify"]["16"]["throughput"]
    theirs = results["servers"][BASELINE["classify"]]["routes"]["classify"]["16"]["throughput"]
    assert found["classify: req/s at c=16 >= 1.2x peer's"] == (ours, theirs, ours >= 1.2 * theirs)
    ours = results["servers"][PRODUCT]["routes"]["detect"]["1"]["p50"]
    theirs = results["servers"][BASELINE["detect"]]["routes"]["detect"]["1"]["p50"]
    assert found["detect: p50 at c=1 <= peer's"] == (ours, theirs, ours <= theirs)


def test_goals_leave_out_a_route_without_its_peer() -> None:
    results = _results()
    del results["servers"][BASELINE["detect"]]
    assert {goal.split(":")[0] for goal, *_ in goals(results)} == {"classify"}


def test_batching_gain_is_on_over_off_per_concurrency() -> None:
    rows = batching(_results())
    assert rows, "the committed run measured the product with batching off"
    for route, c, on, off, gain, *_ in rows:
        assert gain == f"{on / off:.2f}x", (route, c)
