"""PLACEHOLDER (h-driftserve): h-driftcore owns this module; the integrator replaces it with the real one.

Only the interface of DRIFT_INTERFACE.md, with a simple implementation (Kolmogorov-Smirnov on brightness only), so
the serving side can be built and tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from scipy import stats

from services.drift.reference import ReferenceProfile


class DriftTest(BaseModel):
    name: str
    feature: str
    statistic: float
    p_value: float | None
    adjusted_p_value: float | None
    drift: bool


class DriftReport(BaseModel):
    model: str
    version: str
    window: int
    n: int
    verdict: Literal["drift", "no_drift", "insufficient_data"]
    alpha: float
    tests: list[DriftTest]


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
    """KS on brightness only (placeholder); fewer than ``min_rows`` rows: insufficient_data, no test run."""
    recent = list(rows)[:window]
    common: dict[str, Any] = {
        "model": reference.model,
        "version": reference.version,
        "window": window,
        "n": len(recent),
    }
    if len(recent) < min_rows:
        return DriftReport(**common, verdict="insufficient_data", alpha=alpha, tests=[])
    observed = [float(r["image"]["brightness"]) for r in recent]
    result = stats.ks_2samp(reference.image["brightness"], observed)
    p_value = float(result.pvalue)
    test = DriftTest(
        name="ks",
        feature="brightness",
        statistic=float(result.statistic),
        p_value=p_value,
        adjusted_p_value=p_value,
        drift=p_value < alpha,
    )
    return DriftReport(**common, verdict="drift" if test.drift else "no_drift", alpha=alpha, tests=[test])
