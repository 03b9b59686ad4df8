"""The statistics of the drift check against hand examples and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from services.drift.stats import (
    bin_counts,
    chi_squared,
    holm,
    label_psi,
    median_bandwidth,
    mmd_test,
    pooled_bins,
    psi,
    ranked_classes,
)


def test_holm_matches_a_hand_example() -> None:
    # sorted: 0.01 * 4 = 0.04; 0.02 * 3 = 0.06; 0.03 * 2 = 0.06 (monotone); 0.5 * 1 = 0.5
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])


def test_holm_caps_at_one_and_keeps_order_monotone() -> None:
    assert holm([0.9, 0.4]) == pytest.approx([0.9, 0.8])  # 0.9 * 1 < 0.4 * 2 would break monotony: not here
    assert holm([0.7, 0.6]) == pytest.approx([1.0, 1.0])  # 0.6 * 2 capped at 1; 0.7 kept at least 1
    assert holm([]) == []


def test_psi_matches_a_hand_computed_value() -> None:
    expected = np.array([50.0, 30.0, 20.0])
    actual = np.array([30.0, 30.0, 40.0])
    hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + 0 + (0.4 - 0.2) * math.log(0.4 / 0.2)
    assert psi(expected, actual) == pytest.approx(hand)
    assert psi(expected, expected) == 0.0


def test_psi_floors_empty_bins() -> None:
    assert math.isfinite(psi(np.array([10.0, 0.0]), np.array([5.0, 5.0])))


def test_pooled_bins_expect_five_in_both_samples() -> None:
    reference = {f"c{i}": 10 for i in range(20)}  # 200 rows; a window of 50 expects 2.5 per class
    window = {f"c{i}": 2 + i % 2 for i in range(20)} | {"new": 1}
    bins = pooled_bins(reference, window)
    assert sorted(label for group in bins for label in group) == sorted(set(reference) | set(window))
    n_window = sum(window.values())
    for group in bins:
        pooled = sum(reference.get(c, 0) + window.get(c, 0) for c in group)
        assert pooled / (200 + n_window) * n_window >= 5


def test_pooled_bins_rank_by_pooled_counts_and_join_a_short_tail() -> None:
    # pooled: a 60, b 50, c 4, d 2 over 116; the smaller sample (16) expects 5 from a share of 5/16
    bins = pooled_bins({"a": 50, "b": 40, "c": 3, "d": 1}, {"a": 10, "b": 10, "c": 1, "d": 1})
    assert bins == [["a"], ["b", "c", "d"]]


def test_ranked_classes_do_not_follow_the_reference_alone() -> None:
    assert ranked_classes({"a": 5, "b": 4}, {"b": 3}) == ["b", "a"]


def test_bin_counts_put_unknown_classes_in_the_last_bin() -> None:
    assert bin_counts({"a": 3, "z": 4}, [["a"], ["b"]]).tolist() == [3.0, 4.0]


def test_chi_squared_is_scipys_contingency_test_on_the_bins() -> None:
    reference = {"a": 100, "b": 60, "c": 40}
    window = {"a": 20, "b": 30, "c": 50}
    statistic, p_value, bins = chi_squared(reference, window)
    expected = stats.chi2_contingency(np.array([[100, 60, 40], [20, 30, 50]]), correction=False)
    assert bins == 3
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)


def test_chi_squared_with_one_bin_tests_nothing() -> None:
    assert chi_squared({"a": 100}, {"a": 10}) == (0.0, 1.0, 1)
    assert chi_squared({"a": 100}, {}) == (0.0, 1.0, 0)


def test_label_psi_is_zero_for_the_same_histogram_and_large_for_a_collapse() -> None:
    reference = {f"c{i}": 10 for i in range(40)}
    assert label_psi(reference, reference) == pytest.approx(0.0)
    assert label_psi(reference, {"c0": 100}) > 0.25


def test_median_bandwidth_of_points_on_a_line() -> None:
    x = np.array([[0.0], [1.0], [3.0]])  # distances 1, 3, 2
    assert median_bandwidth(x) == pytest.approx(2.0)
    assert median_bandwidth(np.zeros((3, 2))) == 1.0


def test_mmd_of_one_distribution_gives_a_large_p_value_and_of_two_a_tiny_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4))
    same = rng.standard_normal((150, 4))
    moved = rng.standard_normal((150, 4)) + 1.0
    bandwidth = median_bandwidth(x)
    _, p_same, _ = mmd_test(x, same, bandwidth=bandwidth, permutations=200)
    statistic, p_moved, p_permutation = mmd_test(x, moved, bandwidth=bandwidth, permutations=200)
    assert p_same > 0.05
    assert statistic > 0
    assert p_permutation == pytest.approx(1 / 201)  # beaten by no permutation ...
    assert p_moved < 1e-6  # ... and the gamma tail goes below the permutation floor


def test_mmd_p_values_are_roughly_uniform_without_drift() -> None:
    rng = np.random.default_rng(1)
    p_values = []
    for seed in range(40):
        x = rng.standard_normal((60, 3))
        y = rng.standard_normal((40, 3))
        p_values.append(mmd_test(x, y, bandwidth=median_bandwidth(x), permutations=100, seed=seed)[1])
    assert 0.02 <= float(np.mean(np.asarray(p_values) < 0.5)) <= 0.8
    assert float(np.mean(np.asarray(p_values) < 0.05)) <= 0.2


def test_mmd_statistic_matches_the_definition() -> None:
    x = np.array([[0.0], [1.0]])
    y = np.array([[3.0]])
    k = lambda a, b: math.exp(-((a - b) ** 2) / 2)  # noqa: E731 - bandwidth 1
    hand = (k(0, 0) + k(1, 1) + 2 * k(0, 1)) / 4 + k(3, 3) - 2 * (k(0, 3) + k(1, 3)) / 2
    assert mmd_test(x, y, bandwidth=1.0, permutations=10)[0] == pytest.approx(hand, rel=1e-5)
