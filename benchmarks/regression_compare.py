"""The regression check's verdict: tree / baseline ratios against the limits of benchmarks/regression.yaml.

Metrics are flat ``name -> value`` maps, one per side. The name says the kind (:func:`kind_of`): latencies end in
``_ms``, throughputs in ``throughput``, accuracies start with ``accuracy/`` (in percent, so a difference is in
points), server CPU per request ends in ``cpu_ms_per_request``.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from benchmarks.common import table

Kind = Literal["latency", "throughput", "accuracy", "cpu"]
KINDS: tuple[Kind, ...] = ("latency", "throughput", "accuracy", "cpu")
CONFIG = Path(__file__).with_name("regression.yaml")


@dataclass(frozen=True)
class Limit:
    """What one metric may do: rise (``max_ratio``), fall (``min_ratio``) or lose points (``max_drop_points``)."""

    max_ratio: float | None = None
    min_ratio: float | None = None
    max_drop_points: float | None = None

    def merged(self, other: Limit) -> Limit:
        """This limit with the fields ``other`` sets replaced."""
        return replace(self, **{f.name: v for f in fields(other) if (v := getattr(other, f.name)) is not None})

    def describe(self) -> str:
        parts = [f"<= {self.max_ratio:.2f}x"] if self.max_ratio is not None else []
        parts += [f">= {self.min_ratio:.2f}x"] if self.min_ratio is not None else []
        parts += [f"drop <= {self.max_drop_points:g} pt"] if self.max_drop_points is not None else []
        return ", ".join(parts) or "not checked"


@dataclass(frozen=True)
class Limits:
    defaults: dict[str, Limit]
    overrides: tuple[tuple[str, Limit], ...] = ()

    def for_metric(self, name: str) -> Limit:
        """The kind's default, then every matching pattern in order (the last one wins per field)."""
        limit = self.defaults.get(kind_of(name), Limit())
        for pattern, override in self.overrides:
            if fnmatch.fnmatchcase(name, pattern):
                limit = limit.merged(override)
        return limit


def _limit(raw: Any, where: str) -> Limit:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of limits, got {raw!r}")
    known = {f.name for f in fields(Limit)}
    if unknown := set(raw) - known:
        raise ValueError(f"{where}: unknown limit(s) {sorted(unknown)}; known: {sorted(known)}")
    return Limit(**{k: float(v) for k, v in raw.items()})


def load_limits(path: Path = CONFIG) -> Limits:
    """Read and validate a limits file (see benchmarks/regression.yaml)."""
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = raw.get("defaults") or {}
    if unknown := set(defaults) - set(KINDS):
        raise ValueError(f"{path}: unknown kind(s) {sorted(unknown)} under defaults; known: {list(KINDS)}")
    return Limits(
        defaults={kind: _limit(v or {}, f"{path}: defaults.{kind}") for kind, v in defaults.items()},
        overrides=tuple((p, _limit(v, f"{path}: metrics.{p}")) for p, v in (raw.get("metrics") or {}).items()),
    )


def kind_of(name: str) -> Kind:
    if name.startswith("accuracy/"):
        return "accuracy"
    if name.endswith("cpu_ms_per_request"):
        return "cpu"
    if name.endswith("throughput"):
        return "throughput"
    if name.endswith("_ms"):
        return "latency"
    raise ValueError(f"metric {name!r}: cannot tell its kind from the name")


@dataclass(frozen=True)
class Check:
    """One metric compared. ``passed`` is None when nothing was checked (no limit, or no baseline value)."""

    metric: str
    kind: Kind
    baseline: float | None
    tree: float | None
    change: float | None  # ratio tree / baseline; for accuracy, tree - baseline in points
    limit: Limit
    passed: bool | None
    message: str


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def check(name: str, baseline: float | None, tree: float | None, limit: Limit) -> Check:
    """Compare one metric against its limit."""
    kind = kind_of(name)
    if not _known(tree):
        return Check(name, kind, baseline, tree, None, limit, False, f"{name}: not measured on the working tree")
    if not _known(baseline):
        return Check(name, kind, baseline, tree, None, limit, None, f"{name}: new metric, no baseline value")
    assert tree is not None and baseline is not None
    if kind == "accuracy":
        delta = tree - baseline
        ok = limit.max_drop_points is None or -delta <= limit.max_drop_points
        text = f"{name}: {delta:+.2f} points ({baseline:.2f} -> {tree:.2f}; limit: {limit.describe()})"
        return Check(name, kind, baseline, tree, delta, limit, ok if limit.max_drop_points is not None else None, text)
    ratio = tree / baseline if baseline else math.inf
    bounds = [(limit.max_ratio, ratio <= (limit.max_ratio or 0)), (limit.min_ratio, ratio >= (limit.min_ratio or 0))]
    verdicts = [ok for bound, ok in bounds if bound is not None]
    passed = all(verdicts) if verdicts else None
    text = f"{name}: {ratio:.3f}x baseline ({baseline:.4g} -> {tree:.4g}; limit: {limit.describe()})"
    return Check(name, kind, baseline, tree, ratio, limit, passed, text)


def compare(baseline: dict[str, float], tree: dict[str, float], limits: Limits) -> list[Check]:
    """Every metric either side measured, in name order."""
    return [
        check(name, baseline.get(name), tree.get(name), limits.for_metric(name))
        for name in sorted(set(baseline) | set(tree))
    ]


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.passed is False]


def _value(value: float | None) -> str:
    return "-" if not _known(value) else f"{value:.4g}"


def _change(c: Check) -> str:
    if c.change is None:
        return "-"
    return f"{c.change:+.2f} pt" if c.kind == "accuracy" else f"{c.change:.3f}x"


def render(report: dict[str, Any], checks: list[Check]) -> str:
    """benchmarks/reports/regression.md: verdict, every ratio, the plan and the machine."""
    failed = failures(checks)
    verdict = "PASS" if not failed else f"FAIL ({len(failed)} metric(s) past their limits)"
    result = {True: "ok", False: "**FAIL**", None: "not checked"}
    rows = [
        [c.metric, c.kind, _value(c.baseline), _value(c.tree), _change(c), c.limit.describe(), result[c.passed]]
        for c in checks
    ]
    lines = [
        "# Performance regression check",
        "",
        f"Working tree (`{report['tree']}`) against baseline `{report['baseline']}`, measured in one run on one "
        "machine, interleaved: bare-model blocks and served rounds alternate between baseline and tree (the order "
        "flipping every time), accuracy on a fixed sample through each side's served routes. Ratios are tree / "
        "baseline; bare latencies are the p50 of all the side's calls, served ones the median over rounds of each "
        "round's p50. "
        "Made by `python -m benchmarks.regression`; limits in `benchmarks/regression.yaml`.",
        "",
        f"**Verdict: {verdict}**",
        "",
        *(f"- {c.message}" for c in failed),
        *([""] if failed else []),
        table(["metric", "kind", "baseline", "tree", "change", "limit", "result"], rows),
        "",
        "## Plan and machine",
        "",
        *(f"- {k}: {v}" for k, v in {**report["plan"], **report["machine"]}.items()),
        "",
    ]
    return "\n".join(lines)
