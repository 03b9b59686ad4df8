"""PLACEHOLDER, replaced at merge by the statistics helper's real module (confidence intervals, tests, mSPRT).

Only the interface is real: :class:`ArmSample` in, :class:`Analysis` out, :func:`analyze`. This stand-in
counts per arm and does no statistics; the experiments code and its tests use nothing but that interface
and the per-arm counts, so they hold with the real module too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class ArmSample:
    """What the logs and the feedback say about one arm of an experiment."""

    name: str
    version: str
    latencies_ms: Sequence[float]  # one per answered request of the arm
    requests: int  # requests assigned to the arm
    errors: int  # of those, answered with status >= 500
    confidences: Sequence[float]  # top score per answered item
    correct: int  # feedback saying the answer was right
    judged: int  # feedback received


class ArmCounts(BaseModel):
    """PLACEHOLDER: the per-arm counts only."""

    name: str
    version: str
    requests: int
    errors: int
    answered: int
    correct: int
    judged: int


class Analysis(BaseModel):
    """PLACEHOLDER: the real one adds metrics with confidence intervals and the tests' results."""

    control: str
    alpha: float
    arms: list[ArmCounts]


def analyze(
    arms: Sequence[ArmSample], *, control: str | None = None, alpha: float = 0.05, msprt_tau: float | None = None
) -> Analysis:
    """PLACEHOLDER: count per arm; ``control`` defaults to the first arm."""
    del msprt_tau  # the real module's mixture scale
    counts = [
        ArmCounts(
            name=a.name,
            version=a.version,
            requests=a.requests,
            errors=a.errors,
            answered=len(a.latencies_ms),
            correct=a.correct,
            judged=a.judged,
        )
        for a in arms
    ]
    return Analysis(control=control or (arms[0].name if arms else ""), alpha=alpha, arms=counts)
