"""benchmarks/peers_report.py: the committed report is what the code renders from the committed results."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.peers_report import (
    BASELINE,
    NO_BATCHING,
    PRODUCT,
    _idle,
    batching,
    batching_text,
    goals,
    goals_text,
    render,
    route_table,
)

REPORT = Path(__file__).resolve().parents[3] / "benchmarks" / "reports" / "peers.md"


def _results() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(REPORT.with_suffix(".json").read_text())
    return results


def test_the_report_renders_again_from_its_results() -> None:
    assert render(_results()) == REPORT.read_text()


def _each_round(results: dict[str, Any], server: str, route: str, c: str, key: str) -> list[float]:
    return [float(one[server]["routes"][route][c][key]) for one in [results["servers"], *results["repeats"]]]


def test_goals_compare_the_product_with_each_routes_peer_in_every_round() -> None:
    results = _results()
    assert len(results["repeats"]) == 6, "the committed run has seven rounds"
    found = {g.goal: g for g in goals(results)}
    ours = _each_round(results, PRODUCT, "classify", "16", "throughput")
    theirs = _each_round(results, BASELINE["classify"], "classify", "16", "throughput")
    goal = found["classify: req/s at c=16 >= 1.2x peer's"]
    assert goal.ratios == tuple(a / b for a, b in zip(ours, theirs, strict=True))
    assert (goal.product, goal.peer) == (median(ours), median(theirs))
    assert goal.met == (median(goal.ratios) >= 1.2)
    ours = _each_round(results, PRODUCT, "detect", "1", "p50")
    theirs = _each_round(results, BASELINE["detect"], "detect", "1", "p50")
    goal = found["detect: p50 at c=1 <= peer's"]
    assert goal.ratios == tuple(a / b for a, b in zip(ours, theirs, strict=True))
    assert goal.met == (median(goal.ratios) <= 1.0)


def test_goals_leave_out_a_route_without_its_peer() -> None:
    results = _results()
    for one in [results["servers"], *results["repeats"]]:
        del one[BASELINE["detect"]]
    assert {g.goal.split(":")[0] for g in goals(results)} == {"classify"}


def _run(product: float, peer: float) -> dict[str, Any]:
    """One round's servers: classify throughput at c=16 and p50 at c=1 for the product and the peer."""

    def server(rps: float) -> dict[str, Any]:
        return {"routes": {"classify": {"1": {"p50": 1000 / rps}, "16": {"throughput": rps, "p99": 2000 / rps}}}}

    return {PRODUCT: server(product), BASELINE["classify"]: server(peer)}


def test_goals_judge_the_median_of_the_rounds_ratios() -> None:
    rounds = [_run(130.0, 100.0), _run(115.0, 100.0), _run(126.0, 100.0)]
    results = {"servers": rounds[0], "repeats": rounds[1:]}
    found = {g.goal: g for g in goals(results)}
    throughput = found["classify: req/s at c=16 >= 1.2x peer's"]
    assert throughput.ratios == (1.3, 1.15, 1.26)
    assert throughput.ratio == 1.26 and throughput.met and throughput.rounds_met == 2
    assert (throughput.product, throughput.peer) == (126.0, 100.0)  # each side's median
    latency = found["classify: p50 at c=1 <= peer's"]  # 1000 / rps: the product's p50 is the lower in every round
    assert latency.met and latency.rounds_met == 3
    rounds[2] = _run(110.0, 100.0)  # now the median round is the 1.15
    assert not {g.goal: g for g in goals({"servers": rounds[0], "repeats": rounds[1:]})}[throughput.goal].met


def test_a_round_that_missed_a_side_is_left_out_of_that_goal() -> None:
    second = _run(90.0, 100.0)
    del second[BASELINE["classify"]]
    found = {g.goal: g for g in goals({"servers": _run(130.0, 100.0), "repeats": [second]})}
    assert found["classify: req/s at c=16 >= 1.2x peer's"].ratios == (1.3,)


def test_the_report_names_its_rounds() -> None:
    results = _results()
    assert goals_text(results)[0].startswith("7 rounds")
    head = goals_text(results)[0]
    assert "the FastAPI + ONNX Runtime peers (ort-detector, ort-int8)" in head and "started once, side by side" in head
    results["repeats"] = [{PRODUCT: server, "ort-int8": server} for server in results["repeats"][0].values()][:1]
    assert "the FastAPI + ONNX Runtime peer (ort-int8) were started once" in goals_text(results)[0]  # with --only
    del results["repeats"]
    assert goals_text(results)[0].startswith("One round")
    rounds = [_run(130.0, 100.0), _run(115.0, 100.0), _run(126.0, 100.0)]
    text = "\n".join(goals_text({"servers": rounds[0], "repeats": rounds[1:]}))
    row = "| classify: req/s at c=16 >= 1.2x peer's | 126.0 | 100.0 | 1.300, 1.150, 1.260 | 1.260 | 2 of 3 | yes |"
    assert row in text
    rounds[2] = _run(119.9, 100.0)  # a median a hair under the goal must not read as met: three decimals
    text = "\n".join(goals_text({"servers": rounds[0], "repeats": rounds[1:]}))
    assert "| 1.300, 1.150, 1.199 | 1.199 | 1 of 3 | **no** |" in text


def test_batching_gain_is_the_median_of_the_rounds_on_over_off() -> None:
    results = _results()
    rows = batching(results)
    assert rows, "the committed run measured the product with batching off"
    for route, c, _, _, gain, per_round, *_ in rows:  # the committed run has it in every round
        gains = [
            float(one[PRODUCT]["routes"][route][c]["throughput"] / one[NO_BATCHING]["routes"][route][c]["throughput"])
            for one in [results["servers"], *results["repeats"]]
        ]
        assert per_round == ", ".join(f"{g:.2f}" for g in gains), (route, c)
        assert gain == f"{median(gains):.2f}x", (route, c)


def test_idle_cores_are_what_neither_the_server_the_load_generator_nor_other_work_used() -> None:
    run = {"server_cores": 1.5, "client_cpu_s": 0.6, "seconds": 3.0, "other_cores": 0.1}
    assert _idle(run, 2) == "0.20"
    assert _idle(None, 2) == "-"
    assert _idle({"server_cores": 1.5, "other_cores": 0.0}, 2) == "-"  # a report from before the client's CPU
    results = _results()
    load = results["servers"][PRODUCT]["routes"]["classify"]["16"]
    expected = 2 - load["server_cores"] - load["client_cpu_s"] / load["seconds"] - load["other_cores"]
    row = next(line for line in route_table(results, "classify").splitlines() if line.startswith("| this product"))
    assert f"| {load['client_cpu_s'] / load['seconds']:.2f} | {expected:.2f} |" in row


def test_a_side_by_side_run_says_how_its_rounds_ran() -> None:
    rounds = [_run(130.0, 100.0), _run(115.0, 100.0), _run(126.0, 100.0)]
    results: dict[str, Any] = {"servers": rounds[0], "repeats": rounds[1:]}
    assert "were started and measured again in turn" in goals_text(results)[0]  # a run from before side by side
    results["repeats_side_by_side"] = True
    head = goals_text(results)[0]
    assert head.startswith("3 rounds: the first is the tables above; for the other 2 the product")
    assert "the FastAPI + ONNX Runtime peer (ort-int8) were started once, side by side" in head


def test_batching_is_judged_on_the_median_of_the_rounds_that_measured_it_off() -> None:
    def servers(on: float, off: float) -> dict[str, Any]:
        def run(rps: float) -> dict[str, Any]:
            return {"throughput": rps, "p50": 1000 / rps, "p99": 2000 / rps, "statuses": {"200": 600}}

        return {
            PRODUCT: {"routes": {"classify": {"16": run(on)}}},
            NO_BATCHING: {"routes": {"classify": {"16": run(off)}}},
        }

    (row,) = batching({"servers": servers(100.0, 110.0)})  # one round: batching slower, no per-round column
    assert row[4] == "0.91x" and row[-1] == "**no**" and len(row) == 11
    several = {"servers": servers(100.0, 110.0), "repeats": [servers(120.0, 100.0), servers(105.0, 100.0)]}
    (row,) = batching(several)
    assert row[2:6] == [105.0, 100.0, "1.05x", "0.91, 1.20, 1.05"] and row[-1] == "yes"  # medians, gain per round
    assert batching_text(several)[0].startswith("Medians of 3 rounds")
