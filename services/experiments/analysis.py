"""The analysis of an A/B experiment: per-arm reports and every arm compared with the control, as one JSON body.

:func:`analyze` takes what the experiment recorded per arm (:class:`ArmSample`) and answers an
:class:`Analysis`, a pydantic model the routes and the CLI serialise as is. The maths lives in
:mod:`services.experiments.statistics`; this module only chooses the tests, handles arms with no data (a
value is None, a decision ``insufficient_data``, never an exception) and names the methods in the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict

from kernel.errors import InvalidParameter
from services.experiments import statistics as st

METHODS = {
    "error_rate": "errors / requests (status >= 500), Wilson score interval",
    "accuracy": "correct / judged feedback, Wilson score interval",
    "latency_mean_ci": "Student-t interval of the mean latency",
    "latency_median_ci": "distribution-free order-statistic (binomial) interval of the median latency",
    "confidence_mean_ci": "Student-t interval of the mean top score",
    "accuracy_test": "two-sided two-proportion z-test (pooled SE); difference = arm - control with a Wald interval",
    "latency_test": "two-sided Mann-Whitney U (scipy); CLES = P(arm latency > control latency) + ties / 2",
    "sequential_test": "mSPRT, normal mixture N(0, tau^2) on the accuracy difference (Johari, Pekelis, Walsh 2017); "
    "always-valid p-value = running min of 1 / Lambda over the looks (every feedback event when the arms carry "
    "their judgements, else the current totals as one look)",
}


@dataclass(frozen=True)
class ArmSample:
    """What one arm of an experiment recorded.

    Attributes:
        name: Arm name, e.g. "control", "treatment".
        version: Model version the arm serves.
        latencies_ms: One per answered request of the arm.
        requests: Requests assigned to the arm.
        errors: Of those, answered with status >= 500.
        confidences: Top score per answered item.
        correct: Feedback saying the answer was right.
        judged: Feedback received (right or wrong).
        judgements: Optional ``(time, correct)`` of each feedback, in any order; when every compared arm has
            them, the sequential test looks after each feedback event instead of once at the totals.
    """

    name: str
    version: str
    latencies_ms: Sequence[float]
    requests: int
    errors: int
    confidences: Sequence[float]
    correct: int
    judged: int
    judgements: Sequence[tuple[float, bool]] = field(default=())

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"arm {self.name}: need 0 <= errors <= requests, got {self.errors} of {self.requests}")
        if not 0 <= self.correct <= self.judged:
            raise ValueError(f"arm {self.name}: need 0 <= correct <= judged, got {self.correct} of {self.judged}")
        if self.judgements and (
            len(self.judgements) != self.judged or sum(bool(c) for _, c in self.judgements) != self.correct
        ):
            raise ValueError(f"arm {self.name}: the judgements disagree with correct/judged")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(Body):
    low: float
    high: float


class Proportion(Body):
    successes: int
    trials: int
    rate: float | None  # None without trials
    ci: Interval | None


class LatencySummary(Body):
    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    mean_ci: Interval | None  # Student t
    median_ci: Interval | None  # order statistics


class MeanSummary(Body):
    count: int
    mean: float | None
    ci: Interval | None  # Student t


class ArmReport(Body):
    name: str
    version: str
    requests: int
    answered: int
    errors: int
    judged: int
    error_rate: Proportion
    accuracy: Proportion
    latency_ms: LatencySummary
    confidence: MeanSummary


class AccuracyTest(Body):
    statistic: float
    p_value: float
    difference: float  # arm - control
    difference_ci: Interval
    significant: bool


class LatencyTest(Body):
    u: float
    p_value: float
    common_language_effect: float  # P(arm slower than control) + ties / 2
    rank_biserial: float
    median_difference_ms: float  # arm p50 - control p50
    significant: bool


class SequentialReport(Body):
    method: str = "msprt-normal-mixture"
    tau: float
    p_value: float
    decision: st.Decision
    difference: float | None
    log_likelihood_ratio: float
    n_control: int
    n_arm: int
    looks: int
    min_samples: int
    stopped_at_n_control: int | None
    stopped_at_n_arm: int | None


class Comparison(Body):
    arm: str
    control: str
    accuracy: AccuracyTest | None  # None when an arm has no feedback
    latency: LatencyTest | None  # None when an arm has no answered request
    sequential: SequentialReport


class Analysis(Body):
    control: str
    alpha: float
    arms: list[ArmReport]
    comparisons: list[Comparison]
    methods: dict[str, str]


def _interval(bounds: tuple[float, float] | None) -> Interval | None:
    return None if bounds is None else Interval(low=bounds[0], high=bounds[1])


def _proportion(successes: int, trials: int, alpha: float) -> Proportion:
    return Proportion(
        successes=successes,
        trials=trials,
        rate=successes / trials if trials else None,
        ci=_interval(st.wilson_interval(successes, trials, alpha)),
    )


def _latency(values: Sequence[float], alpha: float) -> LatencySummary:
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return LatencySummary(count=0, mean=None, p50=None, p95=None, mean_ci=None, median_ci=None)
    return LatencySummary(
        count=int(a.size),
        mean=float(a.mean()),
        p50=float(np.percentile(a, 50)),
        p95=float(np.percentile(a, 95)),
        mean_ci=_interval(st.mean_interval(a.tolist(), alpha)),
        median_ci=_interval(st.median_interval(a.tolist(), alpha)),
    )


def _arm_report(arm: ArmSample, alpha: float) -> ArmReport:
    confidences = np.asarray(arm.confidences, np.float64)
    return ArmReport(
        name=arm.name,
        version=arm.version,
        requests=arm.requests,
        answered=len(arm.latencies_ms),
        errors=arm.errors,
        judged=arm.judged,
        error_rate=_proportion(arm.errors, arm.requests, alpha),
        accuracy=_proportion(arm.correct, arm.judged, alpha),
        latency_ms=_latency(arm.latencies_ms, alpha),
        confidence=MeanSummary(
            count=int(confidences.size),
            mean=float(confidences.mean()) if confidences.size else None,
            ci=_interval(st.mean_interval(confidences.tolist(), alpha)),
        ),
    )


def _accuracy_test(control: ArmSample, arm: ArmSample, alpha: float) -> AccuracyTest | None:
    test = st.two_proportion_ztest(control.correct, control.judged, arm.correct, arm.judged, alpha)
    if test is None:
        return None
    return AccuracyTest(
        statistic=test.statistic,
        p_value=test.p_value,
        difference=test.difference,
        difference_ci=Interval(low=test.ci_low, high=test.ci_high),
        significant=test.p_value < alpha,
    )


def _latency_test(control: ArmSample, arm: ArmSample, alpha: float) -> LatencyTest | None:
    test = st.mann_whitney(control.latencies_ms, arm.latencies_ms)
    if test is None:
        return None
    return LatencyTest(
        u=test.u,
        p_value=test.p_value,
        common_language_effect=test.common_language_effect,
        rank_biserial=test.rank_biserial,
        median_difference_ms=float(np.median(arm.latencies_ms) - np.median(control.latencies_ms)),
        significant=test.p_value < alpha,
    )


def _sequential(control: ArmSample, arm: ArmSample, alpha: float, tau: float) -> SequentialReport:
    if control.judgements and arm.judgements:
        looks = st.looks_from_judgements(control.judgements, arm.judgements)
        test = st.sequential_test(*looks, tau=tau, alpha=alpha)
    else:
        test = st.sequential_test(control.correct, control.judged, arm.correct, arm.judged, tau=tau, alpha=alpha)
    stopped = test.stopped_at or (None, None)
    return SequentialReport(
        tau=tau,
        p_value=test.p_value,
        decision=test.decision,
        difference=test.difference,
        log_likelihood_ratio=test.log_likelihood_ratio,
        n_control=test.n_control,
        n_arm=test.n_treatment,
        looks=test.looks,
        min_samples=st.MIN_SEQUENTIAL_SAMPLES,
        stopped_at_n_control=stopped[0],
        stopped_at_n_arm=stopped[1],
    )


def analyze(
    arms: Sequence[ArmSample], *, control: str | None = None, alpha: float = 0.05, msprt_tau: float | None = None
) -> Analysis:
    """Report on every arm and compare every other arm with the control.

    Args:
        arms: The arms, names unique; at least one.
        control: Name of the control arm; the first arm when None.
        alpha: Significance level of the tests and one minus the coverage of the intervals.
        msprt_tau: Mixing standard deviation of the sequential test; ``statistics.DEFAULT_TAU`` when None.

    Raises:
        InvalidParameter: No arm, duplicate names, an unknown control, alpha outside (0, 1) or tau <= 0.
    """
    if not arms:
        raise InvalidParameter("an analysis needs at least one arm")
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise InvalidParameter(f"arm names must be unique, got {names}")
    control = names[0] if control is None else control
    if control not in names:
        raise InvalidParameter(f"unknown control arm {control!r}; the arms are {names}")
    if not 0.0 < alpha < 1.0:
        raise InvalidParameter(f"alpha must lie in (0, 1), not {alpha}")
    tau = st.DEFAULT_TAU if msprt_tau is None else msprt_tau
    if tau <= 0:
        raise InvalidParameter(f"msprt_tau must be positive, not {tau}")
    base = arms[names.index(control)]
    comparisons = [
        Comparison(
            arm=arm.name,
            control=control,
            accuracy=_accuracy_test(base, arm, alpha),
            latency=_latency_test(base, arm, alpha),
            sequential=_sequential(base, arm, alpha, tau),
        )
        for arm in arms
        if arm.name != control
    ]
    return Analysis(
        control=control,
        alpha=alpha,
        arms=[_arm_report(arm, alpha) for arm in arms],
        comparisons=comparisons,
        methods=METHODS,
    )
