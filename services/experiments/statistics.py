"""The pure maths of A/B experiments: intervals, fixed-horizon tests and the mSPRT, with no I/O and no models.

Fixed-horizon tests (Wilson interval, two-proportion z-test, Mann-Whitney U) are valid for one look at a
sample size chosen in advance. The mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and
Walsh ("Always Valid Inference: Continuous Monitoring of A/B Tests", 2017; Operations Research 2022) stays
valid however often it is looked at: its p-value is the running minimum of ``1 / Lambda_n`` over the looks,
and ``P(exists n: p_n <= alpha) <= alpha`` under the null. Here it is applied, as in section 5 of the paper,
to the normal approximation of the difference of two proportions with a ``N(0, tau^2)`` mixing distribution.

The array functions (:func:`msprt_log_lr`, :func:`bernoulli_variance`, :func:`always_valid_p`) take numpy
arrays of any shape, so benchmarks/ab_simulation.py runs thousands of experiments through the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.lazy_scipy import stats as scipy_stats

FloatArray = npt.NDArray[np.float64]
Decision = Literal["insufficient_data", "continue", "stop_treatment_better", "stop_control_better"]

# Mixing standard deviation of the accuracy difference: the size of effect the test is tuned to find
# fastest (Johari et al., section 4.2). Five points of accuracy is a change worth shipping or rolling back.
DEFAULT_TAU = 0.05
# Fewer judgements per arm than this and the normal approximation (and its plug-in variance) is not trusted:
# the sequential test reports "insufficient_data" and p = 1.
MIN_SEQUENTIAL_SAMPLES = 20


@dataclass(frozen=True)
class ProportionTest:
    """Two-proportion z-test of ``treatment - control`` (pooled standard error), with a Wald interval."""

    statistic: float
    p_value: float
    difference: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of ``treatment`` against ``control`` and its effect sizes.

    ``common_language_effect`` is ``P(treatment > control) + P(tie) / 2`` for one value drawn from each
    sample (``U / (n_t n_c)``); ``rank_biserial`` is ``2 * CLES - 1``, in [-1, 1].
    """

    u: float
    p_value: float
    common_language_effect: float
    rank_biserial: float


@dataclass(frozen=True)
class SequentialTest:
    """The mSPRT on the accuracy difference at the last look, and where it first crossed ``alpha``."""

    p_value: float
    decision: Decision
    difference: float | None
    log_likelihood_ratio: float
    n_control: int
    n_treatment: int
    looks: int
    stopped_at: tuple[int, int] | None  # (n_control, n_treatment) at the first look with p <= alpha


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")


def wilson_interval(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None without trials.

    Args:
        successes: Number of successes, 0 <= successes <= trials.
        trials: Number of trials.
        alpha: One minus the coverage.

    Returns:
        ``(low, high)``, clipped to [0, 1], or None when ``trials`` is 0.
    """
    _check_alpha(alpha)
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return None
    z = float(scipy_stats().norm.ppf(1 - alpha / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float] | None:
    """Student-t interval of the mean; None with fewer than two values."""
    _check_alpha(alpha)
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        return None
    mean = float(a.mean())
    half = float(scipy_stats().t.ppf(1 - alpha / 2, a.size - 1)) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return mean - half, mean + half


def median_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float] | None:
    """Distribution-free interval of the median from order statistics (binomial, coverage >= 1 - alpha).

    The interval is ``[x_(k), x_(n-k+1)]`` with the largest ``k`` such that ``P(k <= B < n-k+1) >= 1 - alpha``
    for ``B ~ Binomial(n, 1/2)``. With too few values for any such ``k`` it is the whole sample range, which
    then covers with less than ``1 - alpha`` (n < 6 at alpha 0.05). None for an empty sample.
    """
    _check_alpha(alpha)
    a = np.sort(np.asarray(values, dtype=np.float64))
    n = a.size
    if n == 0:
        return None
    # The lower rank k (1-based) is the largest with P(B <= k - 1) < alpha / 2: the smallest j with
    # P(B <= j) >= alpha / 2, which is the binomial quantile. The upper rank is symmetric.
    k = max(int(scipy_stats().binom.ppf(alpha / 2, n, 0.5)), 1)
    return float(a[k - 1]), float(a[n - k])


def two_proportion_ztest(
    control_successes: int, control_trials: int, treatment_successes: int, treatment_trials: int, alpha: float = 0.05
) -> ProportionTest | None:
    """Two-sided z-test of equal proportions; None when either arm has no trials.

    The statistic uses the pooled standard error (the null hypothesis says the proportions are equal); the
    interval of ``p_treatment - p_control`` uses the unpooled one. When every trial in both arms has the same
    outcome the statistic is 0 and the p-value 1.
    """
    _check_alpha(alpha)
    if control_trials == 0 or treatment_trials == 0:
        return None
    p_c = control_successes / control_trials
    p_t = treatment_successes / treatment_trials
    pooled = (control_successes + treatment_successes) / (control_trials + treatment_trials)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control_trials + 1 / treatment_trials))
    difference = p_t - p_c
    statistic = difference / pooled_se if pooled_se > 0 else 0.0
    p_value = float(2 * scipy_stats().norm.sf(abs(statistic)))
    se = math.sqrt(p_c * (1 - p_c) / control_trials + p_t * (1 - p_t) / treatment_trials)
    half = float(scipy_stats().norm.ppf(1 - alpha / 2)) * se
    return ProportionTest(statistic, p_value, difference, difference - half, difference + half)


def mann_whitney(control: Sequence[float], treatment: Sequence[float]) -> RankTest | None:
    """Two-sided Mann-Whitney U test (scipy's, exact or asymptotic as it chooses); None for an empty sample."""
    if len(control) == 0 or len(treatment) == 0:
        return None
    result = scipy_stats().mannwhitneyu(treatment, control, alternative="two-sided")
    u = float(result.statistic)
    cles = u / (len(control) * len(treatment))
    p_value = float(result.pvalue)
    return RankTest(u, 1.0 if math.isnan(p_value) else p_value, cles, 2 * cles - 1)


def bernoulli_variance(
    control_successes: npt.ArrayLike,
    control_trials: npt.ArrayLike,
    treatment_successes: npt.ArrayLike,
    treatment_trials: npt.ArrayLike,
) -> FloatArray:
    """Plug-in variance of ``p_t - p_c``: unpooled, or pooled where the unpooled one is 0.

    The unpooled variance is 0 when each arm is all successes or all failures; if the arms then disagree (all 0
    against all 1) the pooled one is not. Trials must be positive; the result is 0 only where every trial in
    both arms has the same outcome.
    """
    xc, nc = np.asarray(control_successes, np.float64), np.asarray(control_trials, np.float64)
    xt, nt = np.asarray(treatment_successes, np.float64), np.asarray(treatment_trials, np.float64)
    pc, pt = xc / nc, xt / nt
    unpooled = pc * (1 - pc) / nc + pt * (1 - pt) / nt
    pooled_p = (xc + xt) / (nc + nt)
    pooled = pooled_p * (1 - pooled_p) * (1 / nc + 1 / nt)
    return np.where(unpooled > 0, unpooled, pooled)


def msprt_log_lr(difference: npt.ArrayLike, variance: npt.ArrayLike, tau: float) -> FloatArray:
    """Log of the normal-mixture likelihood ratio ``Lambda`` for ``H0: theta = 0``.

    With ``theta_hat ~ N(theta, V)`` and ``theta ~ N(0, tau^2)`` under the alternative,
    ``Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 theta_hat^2 / (2 V (V + tau^2)))``: Johari et al.'s
    ``Lambda_n`` with ``V = 2 sigma^2 / n``. Where ``V`` is 0 (no spread at all) the ratio is 0 (log -inf).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, not {tau}")
    d = np.asarray(difference, np.float64)
    v = np.asarray(variance, np.float64)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    return np.where(v > 0, log_lr, -np.inf)


def always_valid_p(log_lr: npt.ArrayLike) -> FloatArray:
    """Always-valid p-values along the last axis (the looks): ``p_n = min(1, min_{m <= n} 1 / Lambda_m)``."""
    a = np.asarray(log_lr, np.float64)
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-a)), axis=-1)


def sequential_test(
    control_successes: npt.ArrayLike,
    control_trials: npt.ArrayLike,
    treatment_successes: npt.ArrayLike,
    treatment_trials: npt.ArrayLike,
    *,
    tau: float = DEFAULT_TAU,
    alpha: float = 0.05,
    min_samples: int = MIN_SEQUENTIAL_SAMPLES,
) -> SequentialTest:
    """Run the mSPRT over the looks given as cumulative counts (1-d, oldest first; one look is a scalar).

    Looks where an arm has fewer than ``min_samples`` trials do not count (p stays 1 there). The test stops
    at the first look whose always-valid p-value is at most ``alpha``; the decision's direction is the sign of
    the difference at that look. The reported p-value and ratio are those of the last look.
    """
    _check_alpha(alpha)
    xc, nc, xt, nt = (
        np.atleast_1d(np.asarray(a, np.int64))
        for a in (control_successes, control_trials, treatment_successes, treatment_trials)
    )
    if not xc.shape == nc.shape == xt.shape == nt.shape or xc.ndim != 1:
        raise ValueError("the looks must be four 1-d sequences of one length")
    if np.any(xc < 0) or np.any(xt < 0) or np.any(xc > nc) or np.any(xt > nt):
        raise ValueError("need 0 <= successes <= trials at every look")
    n_c, n_t = int(nc[-1]), int(nt[-1])
    usable = (nc >= max(min_samples, 1)) & (nt >= max(min_samples, 1))
    if not usable.any():
        difference = float(xt[-1] / n_t - xc[-1] / n_c) if n_c and n_t else None
        return SequentialTest(1.0, "insufficient_data", difference, 0.0, n_c, n_t, 0, None)
    xc, nc, xt, nt = xc[usable], nc[usable], xt[usable], nt[usable]
    differences = xt / nt - xc / nc
    log_lr = msprt_log_lr(differences, bernoulli_variance(xc, nc, xt, nt), tau)
    p = always_valid_p(log_lr)
    crossed = np.flatnonzero(p <= alpha)
    decision: Decision = "continue"
    stopped_at = None
    if crossed.size:
        first = int(crossed[0])
        stopped_at = (int(nc[first]), int(nt[first]))
        decision = "stop_treatment_better" if differences[first] > 0 else "stop_control_better"
    return SequentialTest(
        float(p[-1]), decision, float(differences[-1]), float(log_lr[-1]), n_c, n_t, int(usable.sum()), stopped_at
    )


def looks_from_judgements(
    control: Sequence[tuple[float, bool]], treatment: Sequence[tuple[float, bool]]
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Cumulative ``(x_c, n_c, x_t, n_t)`` after each judgement of either arm, in time order (one look each).

    Args:
        control: ``(time, correct)`` of each feedback on the control arm, in any order.
        treatment: The same for the treatment arm.
    """
    times = np.asarray([t for t, _ in control] + [t for t, _ in treatment], np.float64)
    correct = np.asarray([c for _, c in control] + [c for _, c in treatment], np.float64)
    is_t = np.r_[np.zeros(len(control)), np.ones(len(treatment))]
    order = np.argsort(times, kind="stable")
    correct, is_t = correct[order], is_t[order]
    return (
        np.cumsum(correct * (1 - is_t)),
        np.cumsum(1 - is_t),
        np.cumsum(correct * is_t),
        np.cumsum(is_t),
    )
