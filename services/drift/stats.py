"""The statistics behind the drift check, on plain arrays: Holm's correction, PSI, pooled class bins, MMD.

Kept apart from services/drift/detect.py (which knows profiles and rows) so each can be tested against a hand
example or SciPy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from services.lazy_scipy import stats as scipy_stats

MIN_EXPECTED = 5.0  # chi-squared's rule of thumb: every pooled bin expects at least this many in both samples
PSI_BINS = 10  # PSI's 0.1 / 0.25 reading was made for about ten bins
PSI_FLOOR = 1e-4  # a proportion of zero would make PSI infinite


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error under any dependence), in the input's order."""
    m = len(p_values)
    order = np.argsort(np.asarray(p_values, dtype=np.float64), kind="stable")
    adjusted = np.empty(m, dtype=np.float64)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted.tolist()


def ranked_classes(reference: Mapping[str, int], window: Mapping[str, int]) -> list[str]:
    """The classes of both histograms by their pooled count, most frequent first (ties by name).

    The order depends on the pooled counts only, the margins the chi-squared test of homogeneity conditions on.
    Ranking by the reference's own counts instead groups the classes the reference over-sampled by chance,
    and the window regresses from them: on Tiny-ImageNet that made a third of same-distribution windows "drift".
    """
    pooled = Counter(reference)
    pooled.update(window)
    return sorted(pooled, key=lambda label: (-pooled[label], label))


def pooled_bins(reference: Mapping[str, int], window: Mapping[str, int]) -> list[list[str]]:
    """Classes grouped in pooled-frequency order until each group expects ``MIN_EXPECTED`` in both samples.

    A window of 500 over 200 near-uniform classes expects 2.5 per class: single classes would break the
    chi-squared approximation, so neighbours in frequency order share a bin. A short last group joins the one before.
    """
    n_reference, n_window = sum(reference.values()), sum(window.values())
    total = n_reference + n_window
    bins: list[list[str]] = []
    current: list[str] = []
    count = 0
    for label in ranked_classes(reference, window):
        current.append(label)
        count += reference.get(label, 0) + window.get(label, 0)
        if count / total * min(n_reference, n_window) >= MIN_EXPECTED:
            bins.append(current)
            current, count = [], 0
    if current:
        if bins:
            bins[-1].extend(current)
        else:
            bins.append(current)
    return bins


def bin_counts(counts: Mapping[str, int], bins: Sequence[Sequence[str]]) -> np.ndarray:
    """``counts`` summed per bin; a class in no bin goes to the last, rarest, bin."""
    where = {label: i for i, group in enumerate(bins) for label in group}
    summed = np.zeros(len(bins), dtype=np.float64)
    for label, value in counts.items():
        summed[where.get(label, len(bins) - 1)] += value
    return summed


def chi_squared(reference: Mapping[str, int], window: Mapping[str, int]) -> tuple[float, float, int]:
    """Chi-squared test of homogeneity of the two class histograms on pooled bins.

    Returns:
        The statistic, its p-value and the number of bins (1 bin: nothing to test, statistic 0 and p 1).
    """
    if not window or not reference:
        return 0.0, 1.0, 0
    bins = pooled_bins(reference, window)
    if len(bins) < 2:
        return 0.0, 1.0, len(bins)
    table = np.stack([bin_counts(reference, bins), bin_counts(window, bins)])
    table = table[:, table.sum(axis=0) > 0]
    statistic, p_value, _, _ = scipy_stats().chi2_contingency(table, correction=False)
    return float(statistic), float(p_value), len(bins)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (counts or proportions), proportions floored at PSI_FLOOR."""
    e = np.maximum(np.asarray(expected, dtype=np.float64) / np.sum(expected), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64) / np.sum(actual), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def label_psi(reference: Mapping[str, int], window: Mapping[str, int]) -> float:
    """PSI of the class histograms on ``PSI_BINS`` bins of near-equal pooled mass (classes by pooled frequency)."""
    ranked = ranked_classes(reference, window)
    pooled = [reference.get(label, 0) + window.get(label, 0) for label in ranked]
    cumulative = np.cumsum(pooled) / sum(pooled)
    edges = np.minimum((cumulative * PSI_BINS - 1e-9).astype(int), PSI_BINS - 1)
    bins: list[list[str]] = [[] for _ in range(PSI_BINS)]
    for label, edge in zip(ranked, edges, strict=True):
        bins[int(edge)].append(label)
    bins = [group for group in bins if group]
    return psi(bin_counts(reference, bins), bin_counts(window, bins))


def median_bandwidth(x: np.ndarray) -> float:
    """The median heuristic: the median pairwise Euclidean distance among the rows of ``x`` (1.0 if it is 0)."""
    squared = _squared_distances(x, x)
    upper = squared[np.triu_indices(len(x), k=1)]
    median = float(np.sqrt(np.median(upper))) if upper.size else 0.0
    return median if median > 0 else 1.0


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    norms_x = np.sum(x * x, axis=1)[:, None]
    norms_y = np.sum(y * y, axis=1)[None, :]
    return np.asarray(np.maximum(norms_x + norms_y - 2.0 * x @ y.T, 0.0))


def mmd_test(
    x: np.ndarray, y: np.ndarray, *, bandwidth: float, permutations: int, seed: int = 0
) -> tuple[float, float, float]:
    """MMD^2 (biased V-statistic, RBF kernel) between samples ``x`` and ``y`` with a permutation test.

    All permutations are evaluated at once: with ``w`` the vector of +1/n (x rows) and -1/m (y rows),
    MMD^2 = w' K w, so a (permutations x N) matrix of shuffled ``w`` against the pooled kernel matrix gives
    every permuted statistic in one matrix product.

    The p-value is the permutation one, (1 + #{permuted >= observed}) / (1 + permutations). When the statistic
    beats every permutation it cannot go below 1 / (1 + permutations), which a Holm family of nine tests at
    alpha 0.01 could never reject; there the tail is read from a gamma matched to the permuted statistics'
    mean and variance (the approximation of Gretton et al., 2009). Under no drift that happens with
    probability at most 1 / (1 + permutations), so the test's false-alarm rate stays below that bound.

    Returns:
        MMD^2, the p-value, and the plain permutation p-value.
    """
    pooled = np.concatenate([x, y]).astype(np.float32)
    n, total = len(x), len(pooled)
    kernel = np.exp(-_squared_distances(pooled, pooled) / np.float32(2.0 * bandwidth**2)).astype(np.float32)
    base = np.concatenate([np.full(n, 1.0 / n), np.full(total - n, -1.0 / (total - n))]).astype(np.float32)
    observed = float(base @ kernel @ base)
    rng = np.random.default_rng(seed)
    shuffled = base[rng.permuted(np.tile(np.arange(total), (permutations, 1)), axis=1)]
    null = np.einsum("ij,ij->i", shuffled @ kernel, shuffled).astype(np.float64)
    beaten = int(np.sum(null >= observed))
    p_permutation = (1 + beaten) / (1 + permutations)
    p_value = p_permutation
    mean, variance = float(null.mean()), float(null.var())
    if beaten == 0 and mean > 0 and variance > 0:
        tail = float(scipy_stats().gamma.sf(observed, mean**2 / variance, scale=variance / mean))
        p_value = min(p_permutation, tail)
    return observed, p_value, p_permutation
