"""The gate's report: Markdown for people, JSON for tools, written beside the model's artifacts.

Sections are functions of the finished :class:`GateRun`. Besides the built-in ones, callers pass
``extensions`` (see :mod:`training.gate.extensions`): each may add a section (and JSON data) from the same run,
for example a drift reference profile built from the validation data, or the shadow agreement of the candidate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.gate.checks import Check, failed
from training.gate.config import ModelGate
from training.gate.evaluation import HeldOut
from training.gate.results import VersionResult


@dataclass
class ReportSection:
    """One part of the report: a Markdown body under ``title`` and what goes under ``key`` in the JSON."""

    title: str
    markdown: str
    key: str = ""
    data: Any = None


@dataclass
class GateRun:
    """Everything one run of the gate measured and decided."""

    gate: ModelGate
    candidate: VersionResult
    production: VersionResult
    data: HeldOut
    checks: list[Check]
    decision: str  # promoted, passed (dry run), refused
    facts: dict[str, Any] = field(default_factory=dict)  # date, commit, command, limit, seed, config path
    report_dir: Path | None = None  # where the report goes: an extension may save its own files there

    @property
    def passed(self) -> bool:
        return not failed(self.checks)


SectionBuilder = Callable[[GateRun], ReportSection | None]


def _row(values: Sequence[Any]) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return "\n".join([_row(headers), _row(["---"] * len(headers)), *(_row(r) for r in rows)])


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _general(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def checks_section(run: GateRun) -> ReportSection:
    rows = [
        [c.name, _general(c.measured), f"{c.allowed:g}", c.unit, _general(c.margin), "pass" if c.passed else "**FAIL**",
         c.detail]
        for c in run.checks
    ]  # fmt: skip
    body = _table(["check", "measured", "allowed", "unit", "margin", "result", "values"], rows)
    return ReportSection("Checks", body, "checks", [vars(c) | {"margin": c.margin} for c in run.checks])


def metrics_section(run: GateRun) -> ReportSection:
    rows = []
    for version in (run.candidate, run.production):
        for precision, result in version.precisions.items():
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
            latency = version.latency_ms.get(precision, {})
            rows.append([version.tag, version.stage, precision, metrics, _num(result.ece),
                         _num(latency.get("p50_ms"), 2), _num(latency.get("p95_ms"), 2)])  # fmt: skip
    body = _table(["version", "stage", "precision", "task metrics", "ECE (15 bins)", "p50 ms", "p95 ms"], rows)
    note = (
        "\n\nLatency: one image per call through the whole serving contract (decode excluded), "
        f"{run.gate.latency_iterations} timed calls per file after {run.gate.latency_warmup} warm-up calls, every "
        f"file's calls interleaved in this one process, ONNX Runtime CPU, {run.gate.threads} intra-op thread(s)."
    )
    return ReportSection("Task metrics, calibration and latency", body + note)


def parity_section(run: GateRun) -> ReportSection:
    rows = [
        [v.tag, _general(v.parity.max_abs_diff) if v.parity else "n/a", v.parity.source if v.parity else "not run"]
        for v in (run.candidate, run.production)
    ]
    return ReportSection("ONNX Runtime FP32 vs PyTorch", _table(["version", "max abs diff", "PyTorch source"], rows))


def worst_section(run: GateRun) -> ReportSection:
    precision = "fp32" if "fp32" in run.candidate.precisions else next(iter(run.candidate.precisions))
    ours = run.candidate.precisions[precision].worst
    theirs = run.production.precisions.get(precision)
    worst_theirs = theirs.worst if theirs else []
    rows = [
        [
            rank + 1,
            f"{ours[rank].name} {ours[rank].score:.3f} (n={ours[rank].count})" if rank < len(ours) else "",
            f"{worst_theirs[rank].name} {worst_theirs[rank].score:.3f} (n={worst_theirs[rank].count})"
            if rank < len(worst_theirs)
            else "",
        ]
        for rank in range(max(len(ours), len(worst_theirs)))
    ]
    metric = {"classification": "top-1 accuracy", "detection": "AP@0.5:0.95", "embedding": "precision@10"}
    title = f"Ten worst classes ({precision}, by {metric[run.data.task]})"
    return ReportSection(title, _table(["rank", run.candidate.tag, run.production.tag], rows))


BUILT_IN: tuple[SectionBuilder, ...] = (checks_section, metrics_section, parity_section, worst_section)


def render(run: GateRun, extensions: Sequence[SectionBuilder] = ()) -> tuple[str, dict[str, Any]]:
    """The Markdown report and its JSON twin."""
    sections = [s for s in (build(run) for build in (*BUILT_IN, *extensions)) if s is not None]
    failures = failed(run.checks)
    verdict = f"**{run.decision.upper()}**"
    if failures:
        verdict += ": " + "; ".join(c.describe() for c in failures)
    sources = {f"{v.tag} ({v.stage})": v.source for v in (run.candidate, run.production) if v.source}
    facts = "\n".join(f"- {k}: {v}" for k, v in {**run.facts, **sources}.items())
    head = (
        f"# Release gate: {run.candidate.tag} against {run.production.tag} ({run.production.stage})\n\n"
        f"Decision: {verdict}\n\n{facts}\n- held-out images: {len(run.data.paths)}\n"
    )
    body = "\n\n".join(f"## {s.title}\n\n{s.markdown}" for s in sections)
    document = {
        "model": run.gate.name,
        "decision": run.decision,
        "passed": run.passed,
        "failed": [c.describe() for c in failures],
        "facts": run.facts,
        "images": len(run.data.paths),
        "thresholds": run.gate.model_dump(mode="json"),
        "candidate": run.candidate.summary(),
        "production": run.production.summary(),
        **{s.key: s.data for s in sections if s.key},
    }
    return head + "\n" + body + "\n", document


def write(run: GateRun, folder: Path, extensions: Sequence[SectionBuilder] = ()) -> Path:
    """Write ``<model>-<candidate>.md`` and ``.json`` into ``folder``; returns the Markdown path."""
    markdown, document = render(run, extensions)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run.gate.name}-{run.candidate.version}.md"
    path.write_text(markdown)
    path.with_suffix(".json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path
