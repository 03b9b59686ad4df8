"""benchmarks/regression.py: raw rounds -> metrics, the sizes, and the exit code of a verdict."""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import regression, regression_side
from benchmarks.regression_compare import Limit, Limits, compare
from benchmarks.regression_sides import RegressionError

REPO = Path(__file__).resolve().parents[3]


def _load(p50: float, ok: int = 10, failed: int = 0, seconds: float = 2.0, cpu: float = 5.0) -> dict[str, Any]:
    statuses = {"200": ok, **({"503": failed} if failed else {})}
    return {"ok": ok, "statuses": statuses, "seconds": seconds, "p50": p50, "cpu_ms_per_request": cpu}


def test_flatten_takes_bare_p50s_served_medians_over_rounds_and_throughput_over_all_of_them() -> None:
    raw = {
        "bare": {"classifier/fp32": {"p50": 12.0, "samples": [12.0]}, "classifier/int8": {"p50": 5.0}},
        "served": {
            "detect": {
                "1": [_load(20.0), _load(40.0), _load(22.0)],
                "16": [_load(99.0, ok=10, seconds=1.0), _load(99.0, ok=20, seconds=3.0)],
            }
        },
        "accuracy": {"classifier_top1": 71.2, "detector_map50_95": 33.9},
    }
    assert regression.flatten(raw) == {
        "bare/classifier/fp32/p50_ms": 12.0,
        "bare/classifier/int8/p50_ms": 5.0,
        "served/detect/c1/p50_ms": 22.0,
        "served/detect/c1/cpu_ms_per_request": 5.0,
        "served/detect/c16/throughput": 30 / 4.0,
        "served/detect/c16/cpu_ms_per_request": 5.0,
        "accuracy/classifier/top1": 71.2,
        "accuracy/detector/map50_95": 33.9,
    }


def test_a_failed_request_voids_the_served_metric() -> None:
    raw = {"served": {"classify": {"1": [_load(20.0), _load(21.0, failed=1)], "16": [_load(5.0, failed=2)]}}}
    metrics = regression.flatten(raw)
    assert math.isnan(metrics["served/classify/c1/p50_ms"])
    assert math.isnan(metrics["served/classify/c16/throughput"])
    cpu = regression.flatten({"served": {"classify": {"1": [{**_load(1.0), "cpu_ms_per_request": math.nan}]}}})
    assert math.isnan(cpu["served/classify/c1/cpu_ms_per_request"])


def test_quick_sizes_apply_unless_one_is_given() -> None:
    full, quick = regression.parse_args([]), regression.parse_args(["--quick", "--rounds", "4"])
    assert (full.rounds, full.bare_blocks, full.classify_images, full.baseline) == (6, 12, 500, "HEAD~1")
    assert (quick.rounds, quick.bare_calls, quick.classify_images) == (4, 4, 40)
    with pytest.raises(SystemExit):
        regression.parse_args(["--requests", "0"])


def _fake_run(failing: bool) -> Any:
    def run(args: Any) -> tuple[dict[str, Any], list[Any]]:
        limits = Limits(defaults={"latency": Limit(max_ratio=1.1)})
        checks = compare({"served/a/c1/p50_ms": 10.0}, {"served/a/c1/p50_ms": 20.0 if failing else 10.0}, limits)
        report = {"tree": "t", "baseline": "b", "plan": {}, "machine": {}, "checks": []}
        return report, checks

    return run


@pytest.mark.parametrize(("failing", "code"), [(False, 0), (True, 1)])
def test_main_writes_both_reports_and_exits_1_on_a_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failing: bool, code: int
) -> None:
    monkeypatch.setattr(regression, "run", _fake_run(failing))
    out = tmp_path / "reports" / "regression.md"
    assert regression.main(["--out", str(out)]) == code
    assert ("FAIL" in out.read_text()) is failing
    assert json.loads(out.with_suffix(".json").read_text())["tree"] == "t"
    assert ("served/a/c1/p50_ms: 2.000x baseline" in caplog.text) is failing


def test_main_exits_2_when_a_side_cannot_be_measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(args: Any) -> Any:
        raise RegressionError("baseline: import of detector failed")

    monkeypatch.setattr(regression, "run", broken)
    assert regression.main(["--out", str(tmp_path / "r.md")]) == 2
    assert not (tmp_path / "r.md").exists()


def test_a_side_process_refuses_code_under_test_from_another_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    regression_side.pin_root(REPO)  # this checkout's services/ is already imported from here
    with pytest.raises(RuntimeError, match="not from"):
        regression_side.pin_root(tmp_path)


def test_a_side_process_answers_each_request_line_with_that_many_samples() -> None:
    counted: list[str] = []
    calls: dict[str, Callable[[], object]] = {
        "detector/int8": lambda: counted.append("d"),
        "classifier/fp32": lambda: counted.append("c"),
    }
    requests = ['{"key": "detector/int8", "calls": 3}\n', '{"key": "classifier/fp32", "calls": 1}']
    reply = io.StringIO()
    regression_side.serve(calls, requests, reply)
    lines = [json.loads(line) for line in reply.getvalue().splitlines()]
    assert lines[0] == {"ready": ["classifier/fp32", "detector/int8"]}
    assert [len(line["samples"]) for line in lines[1:]] == [3, 1] and counted == ["d", "d", "d", "c"]
    assert all(ms >= 0 for ms in lines[1]["samples"])
