"""The gate's decision: each check compares the candidate with production (or with itself) against a threshold.

Every check is "measured <= allowed"; ``margin`` is how far inside (positive) or outside (negative) it landed.
The functions here are pure: they read :class:`VersionResult` values and thresholds, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.gate.config import Thresholds
from training.gate.results import VersionResult

POINTS = 100.0  # fractions -> percentage points
DIGITS = 9  # measurements are compared at this many decimals (float noise of differences of fractions)


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        name: What was checked, with the precision (``top1 drop (int8)``).
        measured: The measured value in ``unit``; None when the check could not measure (then ``passed`` says
            whether that is acceptable, and ``detail`` why).
        allowed: The threshold in ``unit``.
        unit: ``points``, ``%`` or ``max abs diff``.
        passed: Whether the candidate passes it.
        detail: The values behind the measurement, for the report.
    """

    name: str
    measured: float | None
    allowed: float
    unit: str
    passed: bool
    detail: str

    @property
    def margin(self) -> float | None:
        """allowed - measured: the headroom (positive) or the overshoot (negative)."""
        return None if self.measured is None else self.allowed - self.measured

    def describe(self) -> str:
        """One line: what was measured against what was allowed, and by how much it failed or passed."""
        verdict = "passed" if self.passed else "FAILED"
        if self.measured is None:
            return f"{verdict} {self.name}: {self.detail}"
        margin = self.margin or 0.0
        how = f"over by {-margin:.4g} {self.unit}" if margin < 0 else f"{margin:.4g} {self.unit} to spare"
        return (
            f"{verdict} {self.name}: measured {self.measured:.4g} {self.unit}, allowed {self.allowed:.4g} "
            f"{self.unit} ({how}); {self.detail}"
        )


def _at_most(name: str, measured: float, allowed: float, unit: str, detail: str) -> Check:
    # Rounded first, so that 1.0000000000000009 points measured against 1 point allowed passes as 1 == 1.
    measured = round(measured, DIGITS)
    return Check(name, measured, allowed, unit, measured <= allowed, detail)


def metric_checks(candidate: VersionResult, production: VersionResult, metric: str, t: Thresholds) -> list[Check]:
    """The task metric may drop at most ``metric_drop_points`` below production's, per precision."""
    checks = []
    for precision, result in production.precisions.items():
        theirs = result.metrics[metric]
        if precision not in candidate.precisions:
            checks.append(
                Check(
                    f"{metric} drop ({precision})",
                    None,
                    t.metric_drop_points,
                    "points",
                    False,
                    f"the candidate has no {precision} file; production serves one",
                )
            )
            continue
        ours = candidate.precisions[precision].metrics[metric]
        detail = f"candidate {ours:.4f}, production {theirs:.4f}"
        checks.append(
            _at_most(f"{metric} drop ({precision})", (theirs - ours) * POINTS, t.metric_drop_points, "points", detail)
        )
    return checks


def int8_check(candidate: VersionResult, metric: str, t: Thresholds) -> list[Check]:
    """The candidate's INT8 file may lose at most ``int8_loss_points`` of its FP32 metric."""
    if "int8" not in candidate.precisions or "fp32" not in candidate.precisions:
        return []
    fp32 = candidate.precisions["fp32"].metrics[metric]
    int8 = candidate.precisions["int8"].metrics[metric]
    return [
        _at_most(
            f"INT8 {metric} loss",
            (fp32 - int8) * POINTS,
            t.int8_loss_points,
            "points",
            f"candidate FP32 {fp32:.4f}, INT8 {int8:.4f}",
        )
    ]


def ece_checks(candidate: VersionResult, production: VersionResult, t: Thresholds) -> list[Check]:
    """Expected calibration error may rise at most ``ece_increase_points`` over production's, per precision."""
    checks = []
    for precision, result in candidate.precisions.items():
        theirs = production.precisions.get(precision)
        if result.ece is None or theirs is None or theirs.ece is None:
            continue
        detail = f"candidate ECE {result.ece:.4f}, production {theirs.ece:.4f}"
        increase = (result.ece - theirs.ece) * POINTS
        checks.append(_at_most(f"ECE increase ({precision})", increase, t.ece_increase_points, "points", detail))
    return checks


def latency_checks(candidate: VersionResult, production: VersionResult, t: Thresholds) -> list[Check]:
    """Batch-1 p95 latency may be at most ``p95_slowdown_percent`` above production's, per precision."""
    checks = []
    for precision, ours in candidate.latency_ms.items():
        theirs = production.latency_ms.get(precision)
        if theirs is None:
            continue
        slowdown = (ours["p95_ms"] / theirs["p95_ms"] - 1.0) * 100.0
        detail = f"candidate p95 {ours['p95_ms']:.2f} ms, production {theirs['p95_ms']:.2f} ms"
        checks.append(_at_most(f"p95 slowdown ({precision})", slowdown, t.p95_slowdown_percent, "%", detail))
    return checks


def parity_check(candidate: VersionResult, t: Thresholds) -> list[Check]:
    """ONNX Runtime vs PyTorch, where the candidate has a PyTorch source; otherwise recorded as not measured."""
    parity = candidate.parity
    if parity is None:
        return []
    name = "ONNX vs PyTorch parity (fp32)"
    if parity.max_abs_diff is None:
        return [Check(name, None, t.parity_max_abs_diff, "max abs diff", True, f"not measured: {parity.source}")]
    detail = f"{parity.images} images, PyTorch source: {parity.source}"
    return [_at_most(name, parity.max_abs_diff, t.parity_max_abs_diff, "max abs diff", detail)]


def decide(candidate: VersionResult, production: VersionResult, metric: str, thresholds: Thresholds) -> list[Check]:
    """Every check of ``candidate`` against ``production``; the candidate passes when all of them pass."""
    return [
        *metric_checks(candidate, production, metric, thresholds),
        *int8_check(candidate, metric, thresholds),
        *ece_checks(candidate, production, thresholds),
        *latency_checks(candidate, production, thresholds),
        *parity_check(candidate, thresholds),
    ]


def failed(checks: list[Check]) -> list[Check]:
    """The checks that did not pass."""
    return [check for check in checks if not check.passed]
