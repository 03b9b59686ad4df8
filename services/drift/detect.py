"""The drift check: a window of logged requests against the model version's reference profile.

Tests (services/drift/stats.py holds the arithmetic):

- ``ks``: Kolmogorov-Smirnov two-sample, per image feature and on the top-1 confidence;
- ``chi2``: homogeneity of the predicted-class histograms, rare classes pooled so every bin expects >= 5;
- ``mmd``: MMD^2 with an RBF kernel (median-heuristic bandwidth from the reference) on the output sketches,
  permutation test, the reference subsampled to ``MMD_REFERENCE`` rows so one check stays well under a second;
- ``psi``: population stability index of the class histogram, reported with its conventional reading
  (>= 0.1 moderate, >= 0.25 significant shift) but outside the p-value family: it has no p-value, and its value
  depends on the bins and the window size.

Verdict: the p-values are adjusted with Holm's step-down correction, which bounds the family-wise error under
any dependence between the tests (the image features are correlated); ``drift`` when any adjusted p-value is below
``alpha``, so a window without drift is called ``drift`` with probability at most ``alpha``. Benjamini-Hochberg
would control the false discovery rate instead, the wrong quantity for a single yes/no verdict. Fewer than
``min_rows`` rows: ``insufficient_data``, no test run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from services.drift.features import IMAGE_FEATURES
from services.drift.reference import ReferenceProfile
from services.drift.stats import chi_squared, holm, label_psi, median_bandwidth, mmd_test
from services.lazy_scipy import stats as scipy_stats

Verdict = Literal["drift", "no_drift", "insufficient_data"]
MMD_REFERENCE = 500  # reference sketches the MMD test uses (a fixed, seeded subsample)
MMD_WINDOW = 500  # window sketches it uses at most
PSI_SIGNIFICANT = 0.25  # PSI's conventional reading: >= 0.25 is a significant shift


class DriftTest(BaseModel):
    """One test of one feature."""

    name: str  # "ks", "psi", "chi2", "mmd"
    feature: str  # an image feature, "confidence", "labels" or "sketch"
    statistic: float
    p_value: float | None
    adjusted_p_value: float | None  # after the multiple-testing correction
    drift: bool


class DriftReport(BaseModel):
    """The answer of one drift check."""

    model: str
    version: str
    window: int
    n: int
    verdict: Verdict
    alpha: float
    tests: list[DriftTest]


def _ks(feature: str, reference: Sequence[float], window: Sequence[float]) -> DriftTest | None:
    if len(reference) < 2 or len(window) < 2:
        return None
    result = scipy_stats().ks_2samp(np.asarray(reference), np.asarray(window), method="asymp")
    return DriftTest(
        name="ks",
        feature=feature,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        adjusted_p_value=None,
        drift=False,
    )


def _label_tests(reference: ReferenceProfile, rows: Sequence[dict[str, Any]]) -> list[DriftTest]:
    window = Counter(str(row["label"]) for row in rows if row.get("label") is not None)
    if not reference.labels or not window:
        return []
    statistic, p_value, _ = chi_squared(reference.labels, window)
    index = label_psi(reference.labels, window)
    return [
        DriftTest(
            name="chi2", feature="labels", statistic=statistic, p_value=p_value, adjusted_p_value=None, drift=False
        ),
        DriftTest(
            name="psi",
            feature="labels",
            statistic=index,
            p_value=None,
            adjusted_p_value=None,
            drift=index >= PSI_SIGNIFICANT,
        ),
    ]


def _sample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= size:
        return values
    return values[np.sort(rng.choice(len(values), size=size, replace=False))]


def _mmd(reference: ReferenceProfile, rows: Sequence[dict[str, Any]], permutations: int, seed: int) -> DriftTest | None:
    window = [row["sketch"] for row in rows if row.get("sketch") is not None]
    if not reference.sketch or len(window) < 2:
        return None
    x = np.asarray(reference.sketch, dtype=np.float64)
    y = np.asarray(window, dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        return None  # sketches of another dimension: not comparable
    rng = np.random.default_rng(seed)
    x = _sample(x, MMD_REFERENCE, rng)
    y = _sample(y, MMD_WINDOW, rng)
    statistic, p_value, _ = mmd_test(x, y, bandwidth=median_bandwidth(x), permutations=permutations, seed=seed)
    return DriftTest(
        name="mmd", feature="sketch", statistic=statistic, p_value=p_value, adjusted_p_value=None, drift=False
    )


def run_tests(
    reference: ReferenceProfile, rows: Sequence[dict[str, Any]], *, permutations: int = 500, seed: int = 0
) -> list[DriftTest]:
    """Every test that applies to ``rows``, unadjusted (``adjusted_p_value`` None, ``drift`` False but PSI's)."""
    tests: list[DriftTest | None] = [
        _ks(name, reference.image.get(name, []), [float(row["image"][name]) for row in rows if row.get("image")])
        for name in IMAGE_FEATURES
    ]
    confidences = [float(row["confidence"]) for row in rows if row.get("confidence") is not None]
    tests.append(_ks("confidence", reference.confidence, confidences))
    tests.extend(_label_tests(reference, rows))
    tests.append(_mmd(reference, rows, permutations, seed))
    return [test for test in tests if test is not None]


def decide(tests: Sequence[DriftTest], alpha: float) -> tuple[Verdict, list[DriftTest]]:
    """Holm-adjust the p-valued tests and take the verdict: ``drift`` when any adjusted p-value is below ``alpha``."""
    family = [i for i, test in enumerate(tests) if test.p_value is not None]
    adjusted = holm([float(tests[i].p_value or 0.0) for i in family])
    decided = list(tests)
    for i, p_value in zip(family, adjusted, strict=True):
        decided[i] = tests[i].model_copy(update={"adjusted_p_value": p_value, "drift": p_value < alpha})
    verdict: Verdict = "drift" if any(decided[i].drift for i in family) else "no_drift"
    return verdict, decided


def compare(
    reference: ReferenceProfile,
    rows: Sequence[dict[str, Any]],
    *,
    window: int,
    alpha: float = 0.01,
    min_rows: int = 100,
    permutations: int = 500,
    seed: int = 0,
) -> DriftReport:
    """Compare the most recent logged requests with the reference.

    Args:
        reference: The profile of the model version that answered them.
        rows: ``request_features()`` dictionaries, most recent first; only the first ``window`` are used.
        window: How many requests the check covers at most.
        alpha: The family-wise false-alarm rate of the verdict.
        min_rows: Fewer rows than this: ``insufficient_data``, no test run.
        permutations: Permutations of the MMD test.
        seed: Seed of the MMD subsamples and permutations (the same seed, the same answer).
    """
    used = list(rows[: max(window, 0)])
    verdict: Verdict = "insufficient_data"
    tests: list[DriftTest] = []
    if len(used) >= min_rows:
        verdict, tests = decide(run_tests(reference, used, permutations=permutations, seed=seed), alpha)
    return DriftReport(
        model=reference.model,
        version=reference.version,
        window=window,
        n=len(used),
        verdict=verdict,
        alpha=alpha,
        tests=tests,
    )
