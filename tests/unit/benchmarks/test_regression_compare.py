"""benchmarks/regression_compare.py: ratios against limits -> pass / fail, the messages, the limits file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.regression_compare import (
    CONFIG,
    Limit,
    Limits,
    check,
    compare,
    failures,
    kind_of,
    load_limits,
    render,
)

DEFAULTS = Limits(
    defaults={
        "latency": Limit(max_ratio=1.10),
        "throughput": Limit(min_ratio=0.90),
        "accuracy": Limit(max_drop_points=0.5),
        "cpu": Limit(),
    }
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bare/classifier/int8/p50_ms", "latency"),
        ("served/detect/c1/p50_ms", "latency"),
        ("served/detect/c16/throughput", "throughput"),
        ("served/detect/c16/cpu_ms_per_request", "cpu"),
        ("accuracy/classifier/top1", "accuracy"),
    ],
)
def test_the_kind_comes_with_the_name(name: str, kind: str) -> None:
    assert kind_of(name) == kind


def test_a_name_of_no_known_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot tell its kind"):
        kind_of("served/detect/c16/p99")


def test_a_latency_more_than_ten_percent_slower_fails_and_says_by_how_much() -> None:
    result = check("served/classify/c1/p50_ms", 10.0, 11.5, DEFAULTS.for_metric("served/classify/c1/p50_ms"))
    assert result.passed is False
    assert result.change == pytest.approx(1.15)
    assert "1.150x baseline" in result.message and "<= 1.10x" in result.message


def test_a_latency_within_the_limit_passes() -> None:
    assert check("bare/detector/fp32/p50_ms", 10.0, 10.9, DEFAULTS.for_metric("bare/x/fp32/p50_ms")).passed is True


def test_a_throughput_below_ninety_percent_fails() -> None:
    limit = DEFAULTS.for_metric("served/detect/c16/throughput")
    assert check("served/detect/c16/throughput", 20.0, 17.0, limit).passed is False
    assert check("served/detect/c16/throughput", 20.0, 18.5, limit).passed is True


def test_an_accuracy_drop_is_in_points_not_a_ratio() -> None:
    limit = DEFAULTS.for_metric("accuracy/classifier/top1")
    lost = check("accuracy/classifier/top1", 72.0, 71.4, limit)
    assert lost.passed is False and lost.change == pytest.approx(-0.6)
    assert "-0.60 points" in lost.message and "drop <= 0.5 pt" in lost.message
    assert check("accuracy/classifier/top1", 72.0, 71.6, limit).passed is True
    assert check("accuracy/classifier/top1", 72.0, 80.0, limit).passed is True


def test_cpu_is_recorded_but_not_checked_by_default() -> None:
    result = check("served/detect/c16/cpu_ms_per_request", 10.0, 30.0, DEFAULTS.for_metric("x/cpu_ms_per_request"))
    assert result.passed is None and result.change == pytest.approx(3.0)


def test_a_metric_the_tree_did_not_measure_fails() -> None:
    for value in (None, math.nan):
        result = check("served/detect/c1/p50_ms", 10.0, value, Limit(max_ratio=1.1))
        assert result.passed is False and "not measured on the working tree" in result.message


def test_a_new_metric_without_a_baseline_value_is_not_checked() -> None:
    result = check("bare/detector/fp16/p50_ms", None, 5.0, Limit(max_ratio=1.1))
    assert result.passed is None and "no baseline value" in result.message


def test_compare_covers_both_sides_and_failures_lists_the_failing_ones() -> None:
    baseline = {"served/a/c1/p50_ms": 10.0, "served/a/c16/throughput": 100.0, "accuracy/c/top1": 70.0}
    tree = {"served/a/c1/p50_ms": 12.0, "served/a/c16/throughput": 99.0, "bare/m/int8/p50_ms": 3.0}
    checks = compare(baseline, tree, DEFAULTS)
    assert [c.metric for c in checks] == sorted(set(baseline) | set(tree))
    assert {c.metric for c in failures(checks)} == {"served/a/c1/p50_ms", "accuracy/c/top1"}


def test_per_metric_patterns_override_the_kind_default_the_last_match_winning() -> None:
    limits = Limits(
        defaults=DEFAULTS.defaults,
        overrides=(("bare/detector/*", Limit(max_ratio=1.2)), ("bare/detector/int8/*", Limit(max_ratio=1.3))),
    )
    assert limits.for_metric("bare/detector/fp32/p50_ms").max_ratio == 1.2
    assert limits.for_metric("bare/detector/int8/p50_ms").max_ratio == 1.3
    assert limits.for_metric("bare/classifier/int8/p50_ms").max_ratio == 1.1


def test_the_committed_limits_are_those_the_docs_name() -> None:
    limits = load_limits(CONFIG)
    assert limits.for_metric("served/classify/c1/p50_ms") == Limit(max_ratio=1.10)
    assert limits.for_metric("served/classify/c16/throughput") == Limit(min_ratio=0.90)
    assert limits.for_metric("accuracy/classifier/top1") == Limit(max_drop_points=0.5)
    assert limits.for_metric("served/classify/c16/cpu_ms_per_request") == Limit()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("defaults: {latency: {max_ratoi: 1.1}}", "unknown limit"),
        ("defaults: {speed: {max_ratio: 1.1}}", "unknown kind"),
        ("metrics: {'bare/*': 1.2}", "expected a mapping"),
    ],
)
def test_a_bad_limits_file_is_refused_with_the_reason(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        load_limits(path)


def test_the_report_names_the_verdict_and_each_failing_metric() -> None:
    checks = compare({"served/a/c1/p50_ms": 10.0, "bare/m/fp32/p50_ms": 5.0}, {"served/a/c1/p50_ms": 12.0}, DEFAULTS)
    report = {"tree": "abc", "baseline": "HEAD~1 (def)", "plan": {"rounds": 3}, "machine": {"nproc": 2}}
    text = render(report, checks)
    assert "**Verdict: FAIL (2 metric(s) past their limits)**" in text
    assert "- served/a/c1/p50_ms: 1.200x baseline" in text and "- bare/m/fp32/p50_ms: not measured" in text
    assert "| served/a/c1/p50_ms | latency | 10 | 12 | 1.200x | <= 1.10x | **FAIL** |" in text
    passing = render(report, compare({"served/a/c1/p50_ms": 10.0}, {"served/a/c1/p50_ms": 10.0}, DEFAULTS))
    assert "**Verdict: PASS**" in passing and "- rounds: 3" in passing
