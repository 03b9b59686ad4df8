"""The drift check on synthetic distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from services.drift.detect import DriftReport, DriftTest, compare, decide, run_tests
from tests.unit.services.drift.synthetic import CLASSES, reference, rows

FAST = {"permutations": 200}


def by_key(report: DriftReport) -> dict[str, DriftTest]:
    return {f"{t.name}:{t.feature}": t for t in report.tests}


def test_same_distribution_is_no_drift_at_the_right_rate_over_seeds() -> None:
    profile = reference()
    alpha = 0.1  # large enough that its rate is visible in 30 windows
    verdicts = [
        compare(profile, rows(200, seed), window=200, alpha=alpha, seed=seed, **FAST).verdict for seed in range(30)
    ]
    # Holm bounds the family-wise false alarm by alpha: at most ~3 of 30 expected; 9 would be p < 0.001.
    assert verdicts.count("drift") <= 8
    assert verdicts.count("no_drift") + verdicts.count("drift") == 30


def test_every_test_is_reported_with_adjusted_p_values() -> None:
    report = compare(reference(), rows(200, 1), window=200, **FAST)
    keys = by_key(report)
    assert set(keys) == {
        "ks:width",
        "ks:height",
        "ks:brightness",
        "ks:contrast",
        "ks:saturation",
        "ks:blur",
        "ks:confidence",
        "chi2:labels",
        "psi:labels",
        "mmd:sketch",
    }
    for test in report.tests:
        if test.name == "psi":
            assert test.p_value is None and test.adjusted_p_value is None
        else:
            assert test.p_value is not None and test.adjusted_p_value is not None
            assert test.adjusted_p_value >= test.p_value
    assert report.n == 200 and report.window == 200 and report.alpha == 0.01


def test_a_mean_shift_of_brightness_is_drift() -> None:
    report = compare(reference(), rows(200, 2, brightness=0.4), window=200, **FAST)
    assert report.verdict == "drift"
    assert by_key(report)["ks:brightness"].drift


def test_a_class_histogram_shift_is_drift() -> None:
    weights = np.ones(len(CLASSES))
    weights[:5] = 6.0  # a quarter of the classes now takes 60 % of the answers
    report = compare(reference(), rows(300, 3, class_weights=weights), window=300, **FAST)
    keys = by_key(report)
    assert report.verdict == "drift"
    assert keys["chi2:labels"].drift
    assert keys["psi:labels"].statistic > 0.1
    assert not keys["ks:brightness"].drift


def test_a_sketch_shift_is_drift() -> None:
    report = compare(reference(), rows(200, 4, sketch_shift=0.5), window=200, **FAST)
    assert report.verdict == "drift"
    assert by_key(report)["mmd:sketch"].drift


def test_a_small_window_is_insufficient_data() -> None:
    report = compare(reference(), rows(50, 5), window=500)
    assert report.verdict == "insufficient_data"
    assert report.tests == [] and report.n == 50


def test_only_the_first_window_rows_are_used() -> None:
    report = compare(reference(), rows(300, 6), window=150, **FAST)
    assert report.n == 150


def test_ks_is_scipys_two_sample_test() -> None:
    profile = reference()
    window = rows(200, 7, brightness=0.47)
    found = by_key(compare(profile, window, window=200, **FAST))["ks:brightness"]
    expected = stats.ks_2samp(profile.image["brightness"], [r["image"]["brightness"] for r in window], method="asymp")
    assert found.statistic == pytest.approx(expected.statistic)
    assert found.p_value == pytest.approx(expected.pvalue)


def test_the_same_seed_gives_the_same_report() -> None:
    profile, window = reference(), rows(200, 8)
    assert compare(profile, window, window=200, seed=3, **FAST) == compare(profile, window, window=200, seed=3, **FAST)


def test_a_family_without_labels_or_sketches_runs_the_image_tests_only() -> None:
    profile = reference(sketch=False)
    window = [{**r, "label": None, "confidence": None} for r in rows(150, 9, sketch=False)]
    keys = by_key(compare(profile, window, window=150))
    assert set(keys) == {"ks:width", "ks:height", "ks:brightness", "ks:contrast", "ks:saturation", "ks:blur"}


def test_sketches_of_another_dimension_are_not_compared() -> None:
    window = [{**r, "sketch": [0.0, 1.0]} for r in rows(150, 11)]
    assert "mmd:sketch" not in by_key(compare(reference(), window, window=150))


def test_decide_adjusts_only_the_p_valued_tests() -> None:
    tests = run_tests(reference(), rows(200, 12, brightness=0.2), permutations=50)
    verdict, decided = decide(tests, alpha=0.01)
    assert verdict == "drift"
    psi = next(t for t in decided if t.name == "psi")
    assert psi.adjusted_p_value is None
