"""The gate's decision: thresholds -> pass or refuse, with the failed check and by how much."""

from __future__ import annotations

import pytest

from tests.unit.training.gate.fakes import version
from training.gate.checks import Check, decide, failed
from training.gate.config import Thresholds
from training.gate.results import ParityResult

T = Thresholds()  # 0.5 point drop, 1 point INT8 loss, 1 point ECE, 10 % p95, 1e-3 parity


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_candidate_as_good_as_production_passes_every_check() -> None:
    checks = decide(version("v3"), version("v2", stage="production"), "top1", T)
    assert not failed(checks)
    assert set(_by_name(checks)) == {
        "top1 drop (fp32)",
        "top1 drop (int8)",
        "INT8 top1 loss",
        "ECE increase (fp32)",
        "ECE increase (int8)",
        "p95 slowdown (fp32)",
        "p95 slowdown (int8)",
    }


def test_a_metric_drop_past_the_tolerance_is_refused_with_its_margin() -> None:
    candidate = version(top1={"fp32": 0.742, "int8": 0.740})
    checks = _by_name(decide(candidate, version("v2"), "top1", T))
    drop = checks["top1 drop (fp32)"]
    assert not drop.passed
    assert drop.measured == pytest.approx(0.8) and drop.allowed == 0.5
    assert drop.margin == pytest.approx(-0.3)
    assert "over by 0.3 points" in drop.describe() and drop.describe().startswith("FAILED top1 drop (fp32)")
    assert checks["top1 drop (int8)"].passed  # 0.745 -> 0.740: exactly 0.5 point, allowed


def test_exactly_at_the_threshold_passes_despite_float_noise() -> None:
    # 0.75 - 0.74 is 1.0000000000000009 points in floating point.
    candidate = version(top1={"fp32": 0.75, "int8": 0.74})
    (loss,) = [c for c in decide(candidate, version("v2"), "top1", T) if c.name == "INT8 top1 loss"]
    assert loss.measured == 1.0 and loss.passed


def test_int8_loss_over_one_point_is_refused() -> None:
    candidate = version(top1={"fp32": 0.76, "int8": 0.745})
    checks = _by_name(decide(candidate, version("v2"), "top1", T))
    assert failed(list(checks.values())) == [checks["INT8 top1 loss"]]
    assert checks["INT8 top1 loss"].measured == pytest.approx(1.5)


def test_calibration_and_latency_regressions_are_refused() -> None:
    candidate = version(ece={"fp32": 0.08}, p95={"int8": 11.5})
    checks = _by_name(decide(candidate, version("v2"), "top1", T))
    assert [c.name for c in failed(list(checks.values()))] == ["ECE increase (fp32)", "p95 slowdown (int8)"]
    assert checks["ECE increase (fp32)"].measured == pytest.approx(3.0)
    assert checks["p95 slowdown (int8)"].measured == pytest.approx(15.0)
    assert checks["p95 slowdown (fp32)"].passed


def test_a_missing_precision_is_refused_and_an_absent_ece_is_not_checked() -> None:
    candidate = version(top1={"fp32": 0.75}, ece={"fp32": None})
    checks = _by_name(decide(candidate, version("v2"), "top1", T))
    assert not checks["top1 drop (int8)"].passed and checks["top1 drop (int8)"].measured is None
    assert "no int8 file" in checks["top1 drop (int8)"].describe()
    assert "INT8 top1 loss" not in checks and "ECE increase (fp32)" not in checks


def test_parity_is_checked_where_measured_and_recorded_where_not() -> None:
    bad = version(parity=ParityResult(max_abs_diff=0.02, source="state dict", images=8))
    (check,) = [c for c in decide(bad, version("v2"), "top1", T) if c.name.startswith("ONNX")]
    assert not check.passed and check.margin == pytest.approx(-0.019)
    none = version(parity=ParityResult(max_abs_diff=None, source="no PyTorch weights here"))
    (check,) = [c for c in decide(none, version("v2"), "top1", T) if c.name.startswith("ONNX")]
    assert check.passed and check.margin is None and "not measured: no PyTorch weights here" in check.describe()


def test_looser_thresholds_let_the_same_candidate_through() -> None:
    candidate = version(top1={"fp32": 0.742, "int8": 0.740})
    assert failed(decide(candidate, version("v2"), "top1", T))
    assert not failed(decide(candidate, version("v2"), "top1", Thresholds(metric_drop_points=1.0)))
