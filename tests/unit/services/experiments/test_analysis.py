"""analyze(): the per-arm reports, the comparisons with the control, and arms with little or no data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernel.errors import InvalidParameter
from services.experiments import statistics as st
from services.experiments.analysis import Analysis, ArmSample, analyze


def arm(name: str, *, accuracy: float = 0.75, latency: float = 50.0, n: int = 200, seed: int = 0) -> ArmSample:
    rng = np.random.default_rng(seed)
    correct = round(accuracy * n)
    return ArmSample(
        name=name,
        version=f"{name}-v",
        latencies_ms=rng.normal(latency, 5, n).tolist(),
        requests=n + 5,
        errors=5,
        confidences=rng.uniform(0.2, 1.0, n).tolist(),
        correct=correct,
        judged=n,
    )


def test_two_arms_are_reported_and_compared() -> None:
    control, treatment = arm("control", seed=1), arm("treatment", accuracy=0.9, latency=45.0, seed=2)
    result = analyze([control, treatment])
    assert result.control == "control"
    assert [a.name for a in result.arms] == ["control", "treatment"]
    report = result.arms[1]
    assert (report.requests, report.answered, report.errors, report.judged) == (205, 200, 5, 200)
    assert report.accuracy.rate == pytest.approx(0.9)
    assert report.accuracy.ci is not None
    assert (report.accuracy.ci.low, report.accuracy.ci.high) == pytest.approx(st.wilson_interval(180, 200))
    assert report.error_rate.rate == pytest.approx(5 / 205)
    latency = report.latency_ms
    assert latency.mean == pytest.approx(np.mean(treatment.latencies_ms))
    assert latency.p95 == pytest.approx(np.percentile(treatment.latencies_ms, 95))
    assert latency.mean_ci is not None
    assert latency.median_ci is not None
    assert latency.mean is not None
    assert latency.p50 is not None
    assert latency.mean_ci.low < latency.mean < latency.mean_ci.high
    assert latency.median_ci.low <= latency.p50 <= latency.median_ci.high
    assert report.confidence.mean == pytest.approx(np.mean(treatment.confidences))

    (comparison,) = result.comparisons
    assert (comparison.arm, comparison.control) == ("treatment", "control")
    assert comparison.accuracy is not None
    assert comparison.accuracy.difference == pytest.approx(0.15)
    assert comparison.accuracy.significant
    assert comparison.latency is not None
    assert comparison.latency.significant
    assert comparison.latency.common_language_effect < 0.5  # the treatment is faster
    assert comparison.latency.median_difference_ms < 0
    sequential = comparison.sequential
    assert (sequential.decision, sequential.looks, sequential.n_control, sequential.n_arm) == (
        "stop_treatment_better",
        1,
        200,
        200,
    )
    assert (sequential.stopped_at_n_control, sequential.stopped_at_n_arm) == (200, 200)
    assert sequential.tau == st.DEFAULT_TAU


def test_the_analysis_is_json_and_round_trips() -> None:
    result = analyze([arm("a"), arm("b", seed=3), arm("c", n=0)], alpha=0.1, msprt_tau=0.02)
    body = json.loads(result.model_dump_json())
    assert body["alpha"] == 0.1
    assert body["comparisons"][0]["sequential"]["tau"] == 0.02
    assert set(body["methods"]) >= {"accuracy_test", "latency_test", "sequential_test", "latency_median_ci"}
    assert Analysis.model_validate(body) == result


def test_an_arm_with_no_feedback_is_insufficient_data_not_a_crash() -> None:
    silent = ArmSample("treatment", "v2", [40.0, 41.0, 39.5], 3, 0, [0.9, 0.8, 0.7], correct=0, judged=0)
    (comparison,) = analyze([arm("control"), silent]).comparisons
    assert comparison.accuracy is None
    assert comparison.latency is not None
    assert comparison.sequential.decision == "insufficient_data"
    assert comparison.sequential.p_value == 1.0
    assert comparison.sequential.difference is None


def test_an_arm_with_no_answered_request_has_no_latency() -> None:
    down = ArmSample("treatment", "v2", [], 10, 10, [], correct=0, judged=0)
    result = analyze([arm("control"), down])
    report = result.arms[1]
    assert report.latency_ms.count == 0
    assert report.latency_ms.mean is None
    assert report.latency_ms.mean_ci is None
    assert report.confidence.mean is None
    assert report.error_rate.rate == 1.0
    assert report.accuracy.rate is None
    assert result.comparisons[0].latency is None


def test_a_single_arm_has_a_report_and_no_comparison() -> None:
    one = ArmSample("only", "v1", [12.5], 1, 0, [0.5], correct=1, judged=1)
    result = analyze([one])
    assert result.comparisons == []
    latency = result.arms[0].latency_ms
    assert latency.mean_ci is None
    assert latency.median_ci is not None
    assert (latency.median_ci.low, latency.median_ci.high) == (12.5, 12.5)


def test_the_control_is_chosen_by_name() -> None:
    result = analyze([arm("treatment", accuracy=0.5), arm("control", seed=4)], control="control")
    (comparison,) = result.comparisons
    assert (comparison.arm, comparison.control) == ("treatment", "control")
    assert comparison.accuracy is not None
    assert comparison.accuracy.difference == pytest.approx(-0.25)
    assert comparison.sequential.decision == "stop_control_better"


def test_judgements_make_every_feedback_a_look() -> None:
    rng = np.random.default_rng(5)

    def judged(name: str, p: float, offset: float) -> ArmSample:
        outcomes = (rng.random(100) < p).tolist()
        judgements = [(offset + i, bool(c)) for i, c in enumerate(outcomes)]
        return ArmSample(name, "v", [1.0], 1, 0, [0.5], correct=sum(outcomes), judged=100, judgements=judgements)

    (comparison,) = analyze([judged("control", 0.75, 0.0), judged("treatment", 0.75, 0.5)]).comparisons
    # Looks count from the first event where both arms have the minimum sample, one per event after it.
    assert comparison.sequential.looks == 2 * (100 - st.MIN_SEQUENTIAL_SAMPLES) + 1
    assert comparison.sequential.decision == "continue"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"control": "nobody"}, "unknown control"),
        ({"alpha": 0.0}, "alpha"),
        ({"msprt_tau": -0.1}, "msprt_tau"),
    ],
)
def test_bad_parameters_are_invalid_parameter_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        analyze([arm("a"), arm("b")], **kwargs)  # type: ignore[arg-type]


def test_no_arm_or_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="at least one"):
        analyze([])
    with pytest.raises(InvalidParameter, match="unique"):
        analyze([arm("a"), arm("a")])


@pytest.mark.parametrize(
    ("errors", "correct", "judgements", "message"),
    [(11, 0, (), "errors <= requests"), (0, 3, (), "correct <= judged"), (0, 1, ((1.0, False),), "judgements")],
)
def test_inconsistent_arm_samples_are_refused(
    errors: int, correct: int, judgements: tuple[tuple[float, bool], ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ArmSample(
            "a", "v", [], 10, errors, [], correct=correct, judged=2 if not judgements else 1, judgements=judgements
        )
