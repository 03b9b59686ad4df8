"""The statistics of A/B experiments against published values, scipy and direct numerical integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from services.experiments import statistics as st


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I, method 3 (Wilson).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe_table(successes: int, trials: int, low: float, high: float) -> None:
    interval = st.wilson_interval(successes, trials)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=5e-5)
    reference = stats.binomtest(successes, trials).proportion_ci(method="wilson")
    assert interval == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_wilson_interval_without_trials_is_none_and_bad_counts_raise() -> None:
    assert st.wilson_interval(0, 0) is None
    assert st.wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    with pytest.raises(ValueError, match="successes <= trials"):
        st.wilson_interval(3, 2)
    with pytest.raises(ValueError, match="alpha"):
        st.wilson_interval(1, 2, alpha=1.0)


def test_mean_interval_is_scipys_student_t() -> None:
    values = [12.0, 15.5, 9.25, 11.0, 20.0, 13.5]
    low, high = stats.t.interval(0.9, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert st.mean_interval(values, alpha=0.1) == pytest.approx((low, high))
    assert st.mean_interval([3.0]) is None


@pytest.mark.parametrize(
    # Ranks of the distribution-free 95 % interval of the median (e.g. Conover, Practical Nonparametric Statistics).
    ("n", "ranks"),
    [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (100, (40, 61))],
)
def test_median_interval_takes_the_tabulated_order_statistics(n: int, ranks: tuple[int, int]) -> None:
    values = [float(v) for v in np.random.default_rng(n).permutation(np.arange(1, n + 1))]
    assert st.median_interval(values) == (float(ranks[0]), float(ranks[1]))


def test_median_interval_of_tiny_samples_is_the_range() -> None:
    assert st.median_interval([]) is None
    assert st.median_interval([4.0]) == (4.0, 4.0)
    assert st.median_interval([5.0, 1.0, 3.0]) == (1.0, 5.0)


def test_two_proportion_ztest_matches_hand_values_and_the_chi_square_test() -> None:
    test = st.two_proportion_ztest(150, 200, 180, 200)
    assert test is not None
    pooled_se = math.sqrt(0.825 * 0.175 * (2 / 200))  # pooled p = 330 / 400
    assert test.statistic == pytest.approx(0.15 / pooled_se)
    assert test.statistic == pytest.approx(3.947710, abs=1e-6)
    chi2, p_value, _, _ = stats.chi2_contingency([[150, 50], [180, 20]], correction=False)
    assert test.statistic**2 == pytest.approx(chi2)
    assert test.p_value == pytest.approx(p_value)
    half = 1.959964 * math.sqrt(0.75 * 0.25 / 200 + 0.9 * 0.1 / 200)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.15 - half, 0.15 + half), abs=1e-6)


def test_two_proportion_ztest_degenerate_cases() -> None:
    assert st.two_proportion_ztest(0, 0, 5, 10) is None
    same = st.two_proportion_ztest(10, 10, 7, 7)
    assert same is not None
    assert (same.statistic, same.p_value, same.difference) == (0.0, 1.0, 0.0)


def test_mann_whitney_is_scipys_with_the_common_language_effect() -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.normal(50, 5, 40).tolist(), rng.normal(47, 5, 35).tolist()
    test = st.mann_whitney(control, treatment)
    reference = stats.mannwhitneyu(treatment, control, alternative="two-sided")
    assert test is not None
    assert (test.u, test.p_value) == pytest.approx((reference.statistic, reference.pvalue))
    pairs = [(t > c) + 0.5 * (t == c) for t in treatment for c in control]
    assert test.common_language_effect == pytest.approx(np.mean(pairs))
    assert test.rank_biserial == pytest.approx(2 * np.mean(pairs) - 1)


def test_mann_whitney_separated_tied_and_empty_samples() -> None:
    slower = st.mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert slower is not None
    assert (slower.u, slower.common_language_effect, slower.rank_biserial) == (9.0, 1.0, 1.0)
    assert slower.p_value == pytest.approx(0.1)  # exact: 2 / C(6, 3)
    tied = st.mann_whitney([2.0, 2.0], [2.0, 2.0, 2.0])
    assert tied is not None
    assert (tied.common_language_effect, tied.p_value) == (0.5, 1.0)
    assert st.mann_whitney([], [1.0]) is None


@pytest.mark.parametrize(("difference", "variance", "tau"), [(0.0, 1e-3, 0.05), (0.04, 4e-4, 0.05), (-0.1, 2e-3, 0.02)])
def test_msprt_ratio_is_the_normal_mixture_integrated(difference: float, variance: float, tau: float) -> None:
    sd = math.sqrt(variance)

    def mixed(theta: float) -> float:
        return float(stats.norm.pdf(difference, theta, sd) * stats.norm.pdf(theta, 0, tau))

    numerator, _ = integrate.quad(mixed, -1, 1, points=[0.0, difference], epsabs=1e-13)
    expected = numerator / stats.norm.pdf(difference, 0, sd)
    assert float(st.msprt_log_lr(difference, variance, tau)) == pytest.approx(math.log(expected), rel=1e-6, abs=1e-9)


def test_msprt_ratio_without_spread_is_zero_and_tau_must_be_positive() -> None:
    assert st.msprt_log_lr([0.0], [0.0], 0.05)[0] == -np.inf
    with pytest.raises(ValueError, match="tau"):
        st.msprt_log_lr(0.1, 1e-3, 0.0)


def test_bernoulli_variance_falls_back_to_the_pooled_one() -> None:
    assert st.bernoulli_variance(50, 100, 25, 100) == pytest.approx(0.25 / 100 + 0.1875 / 100)
    assert st.bernoulli_variance(100, 100, 50, 100) == pytest.approx(0.25 / 100)
    assert st.bernoulli_variance(100, 100, 0, 100) == pytest.approx(0.5 * 0.5 * (2 / 100))
    assert st.bernoulli_variance(100, 100, 100, 100) == 0.0


def test_always_valid_p_never_rises_over_the_looks() -> None:
    log_lr = np.array([[-1.0, 0.5, 2.0, 1.0, 4.0, -3.0]])
    p = st.always_valid_p(log_lr)
    assert p[0, 0] == 1.0
    assert np.all(np.diff(p, axis=1) <= 0)
    assert p[0, -1] == pytest.approx(math.exp(-4.0))


def _per_observation_looks(control: np.ndarray, treatment: np.ndarray) -> tuple[np.ndarray, ...]:
    n = np.arange(1, len(control) + 1)
    return np.cumsum(control), n, np.cumsum(treatment), n


def test_sequential_p_values_are_monotone_along_a_real_path() -> None:
    rng = np.random.default_rng(7)
    xc, nc, xt, nt = _per_observation_looks(rng.random(400) < 0.7, rng.random(400) < 0.8)
    previous = 1.0
    for end in range(st.MIN_SEQUENTIAL_SAMPLES, 401, 20):
        test = st.sequential_test(xc[:end], nc[:end], xt[:end], nt[:end])
        assert test.p_value <= previous
        previous = test.p_value


def test_a_huge_effect_stops_in_its_direction() -> None:
    rng = np.random.default_rng(3)
    low, high = rng.random(300) < 0.5, rng.random(300) < 0.95
    better = st.sequential_test(*_per_observation_looks(low, high))
    assert better.decision == "stop_treatment_better"
    assert better.p_value <= 0.05
    assert better.stopped_at is not None
    assert better.stopped_at[0] < 300
    worse = st.sequential_test(*_per_observation_looks(high, low))
    assert worse.decision == "stop_control_better"


def test_a_null_with_a_fixed_seed_does_not_stop_at_small_n() -> None:
    rng = np.random.default_rng(11)
    test = st.sequential_test(*_per_observation_looks(rng.random(200) < 0.75, rng.random(200) < 0.75))
    assert test.decision == "continue"
    assert test.stopped_at is None
    assert test.looks == 200 - st.MIN_SEQUENTIAL_SAMPLES + 1
    assert (test.n_control, test.n_treatment) == (200, 200)
    assert test.p_value > 0.05


def test_sequential_test_below_the_minimum_sample_is_insufficient() -> None:
    test = st.sequential_test(5, 10, 9, 10)
    assert (test.decision, test.p_value, test.looks) == ("insufficient_data", 1.0, 0)
    assert test.difference == pytest.approx(0.4)
    empty = st.sequential_test(5, 10, 0, 0)
    assert (empty.decision, empty.difference) == ("insufficient_data", None)


def test_sequential_test_refuses_inconsistent_looks() -> None:
    with pytest.raises(ValueError, match="one length"):
        st.sequential_test([1, 2], [1, 2], [1], [1])
    with pytest.raises(ValueError, match="successes <= trials"):
        st.sequential_test(30, 20, 10, 20)


def test_looks_from_judgements_interleave_the_arms_in_time_order() -> None:
    xc, nc, xt, nt = st.looks_from_judgements([(3.0, True), (1.0, False)], [(2.0, True), (4.0, True)])
    assert xc.tolist() == [0, 0, 1, 1]
    assert nc.tolist() == [1, 1, 2, 2]
    assert xt.tolist() == [0, 1, 1, 2]
    assert nt.tolist() == [0, 1, 1, 2]
