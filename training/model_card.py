"""Model cards generated from a model version's metrics JSON.

Usage::

    python -m training.model_card --metrics artifacts/yolox_nano/metrics.json --out bentos/detector/MODEL_CARD.md
    python -m training.model_card --metrics artifacts/efficientnet_lite0_imagenet1k/metrics.json --model embedder
    python -m training.model_card --all    # artifacts/*/metrics.json, */*.metrics.json -> bentos/*/MODEL_CARD.md
    python -m training.model_card --all --check    # exit 1 when a committed card is stale

The report a card renders is read by training/model_report.py (the schema, and what it merges in: INT8 results from
``quantization.json``, latency from ``benchmarks/reports/formats.json``). Numbers come only from these files: a
field nobody measured stays absent and the card says so.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.model_report import (
    FORMATS_JSON,
    METRIC_NAMES,
    REPO,
    TASK_OF,
    FileReport,
    ModelReport,
    display_path,
    load_reports,
    version_key,
)

LOG = logging.getLogger("training.model_card")


# ---- rendering -------------------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_num(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _bullets(items: Sequence[str], empty: str) -> str:
    return "\n".join(f"- {item}" for item in items) if items else empty


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", ", ".join(map(str, value)) if isinstance(value, list) else value))
    return rows


def _file_line(precision: str, f: FileReport) -> str:
    parts = [f"`{f.name}` {precision.upper()}"]
    if f.bytes is not None:
        parts.append(f"{f.bytes:,} bytes")
    if f.sha256:
        parts.append(f"sha256 `{f.sha256[:12]}...`")
    return ", ".join(parts) + (f"; {f.note}" if f.note else "")


def _overview(r: ModelReport) -> str:
    rows: list[tuple[str, str]] = [
        ("Task", r.task),
        ("Architecture", r.arch),
        ("Weights", r.source),
        ("Model licence", r.model_licence),
        ("Training data", r.data.training),
        ("Files", "<br>".join(_file_line(p, f) for p, f in r.files.items())),
        *r.pipeline.items(),
    ]
    return _table(["", ""], rows)


def _metrics(r: ModelReport) -> str:
    names = list(dict.fromkeys([*r.metrics.fp32, *r.metrics.int8]))
    parts = [f"Evaluation: {r.data.evaluation}"]
    if names:
        rows = []
        for name in names:
            fp32, int8 = r.metrics.fp32.get(name), r.metrics.int8.get(name)
            delta = f"{int8 - fp32:+.4g}" if fp32 is not None and int8 is not None else "-"
            label = METRIC_NAMES.get(name, name)
            rows.append([label, "-" if fp32 is None else fp32, "-" if int8 is None else int8, delta])
        parts.append(_table(["metric", "FP32", "INT8", "INT8 - FP32"], rows))
        if not r.metrics.int8:
            parts.append("INT8: not measured yet.")
    else:
        parts.append("No accuracy metric measured yet.")
    if r.deltas:
        parts.append("FP32 vs INT8:\n\n" + _table(["comparison", "value"], list(r.deltas.items())))
    if r.checks:
        parts.append("Checks:\n\n" + _table(["check", "value"], list(r.checks.items())))
    if r.metric_notes:
        parts.append(_bullets(r.metric_notes, ""))
    return "\n\n".join(parts)


def _latency(r: ModelReport) -> str:
    if not r.latency:
        return (
            "Not measured on this file by `benchmarks/formats.py` (`make formats`); "
            "serving latency: benchmarks/reports/serving.md."
        )
    rows = [
        [fmt, batch, f"{p.p50_ms:.2f}", f"{p.p95_ms:.2f}", f"{p.throughput:.1f}"]
        for fmt, points in r.latency.items()
        for batch, p in sorted(points.items())
    ]
    return f"Measured by `benchmarks/formats.py` ({r.latency_source}).\n\n" + _table(
        ["format", "batch", "p50 ms", "p95 ms", "images/s"], rows
    )


def _licences(r: ModelReport) -> str:
    rows = [[d.name, d.licence, d.note or "-"] for d in r.data.licences]
    return f"Model: {r.model_licence}.\n\n" + _table(["data", "licence", "note"], rows)


def render(report: ModelReport, source: str) -> str:
    """The markdown card of one report; ``source`` names the metrics file it came from."""
    r = report
    sections = [
        (
            "Intended use",
            r.intended_use + ("\n\nOut of scope:\n\n" + _bullets(r.out_of_scope, "") if r.out_of_scope else ""),
        ),
        ("Data and licences", f"Training: {r.data.training}\n\n{_licences(r)}"),
        ("Metrics", _metrics(r)),
        ("Latency", _latency(r)),
    ]
    if r.training:
        sections.append(("Training", _table(["setting", "value"], _flatten(r.training))))
    if r.quantization:
        sections.append(("Quantization", _table(["setting", "value"], _flatten(r.quantization))))
    provenance = [[k, v] for k, v in r.provenance.model_dump().items() if v]
    sections += [
        ("Limitations", _bullets(r.limitations, "None recorded.")),
        ("Failure cases", _bullets(r.failure_cases, "None recorded.")),
        ("Provenance", _table(["", ""], provenance) if provenance else "Not recorded."),
    ]
    head = (
        f"# Model card: {r.model} {r.version} ({r.title})\n\n"
        f"<!-- Generated by `python -m training.model_card` from {source}; edit that file, not this one. -->\n\n"
        f"{r.summary}\n\n{_overview(r)}\n"
    )
    return head + "".join(f"\n## {title}\n\n{body}\n" for title, body in sections)


# ---- command line ---------------------------------------------------------------------------------------------


def cards_for(metrics_files: Sequence[Path], bentos: Path, formats: Path | None) -> dict[Path, str]:
    """card path -> markdown: per model, the newest version found in ``metrics_files``."""
    newest: dict[str, tuple[ModelReport, Path]] = {}
    for path in metrics_files:
        for report in load_reports(path, formats):
            held = newest.get(report.model)
            if held is None or version_key(report.version) > version_key(held[0].version):
                newest[report.model] = (report, path)
    return {bentos / m / "MODEL_CARD.md": render(r, display_path(p)) for m, (r, p) in sorted(newest.items())}


def pick(reports: list[ModelReport], model: str | None, path: Path) -> ModelReport:
    """The one report of ``path`` for ``model`` (needed when the file holds several)."""
    chosen = [r for r in reports if model is None or r.model == model]
    if len(chosen) != 1:
        found = ", ".join(f"{r.model} {r.version}" for r in reports)
        raise SystemExit(f"{path} holds {found}: choose one with --model")
    return chosen[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description="Model cards from metrics JSON")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--metrics", type=Path, help="a metrics.json (one report or a list)")
    which.add_argument("--all", action="store_true", help="every ARTIFACTS/*/metrics.json and */*.metrics.json")
    parser.add_argument("--model", choices=sorted(TASK_OF), help="which report of a file holding several")
    parser.add_argument("--out", type=Path, help="card to write (default: BENTOS/<model>/MODEL_CARD.md)")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--bentos", type=Path, default=REPO / "bentos")
    parser.add_argument("--formats", type=Path, default=FORMATS_JSON, help="latency from benchmarks/formats.py")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a card differs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.all:
        reports = sorted(args.artifacts.glob("*/metrics.json")) + sorted(args.artifacts.glob("*/*.metrics.json"))
        cards = cards_for(reports, args.bentos, args.formats)
    else:
        report = pick(load_reports(args.metrics, args.formats), args.model, args.metrics)
        out = args.out or args.bentos / report.model / "MODEL_CARD.md"
        cards = {out: render(report, display_path(args.metrics))}
    stale = [path for path, text in cards.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            LOG.error("%s is stale: regenerate it with python -m training.model_card", path)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cards[path])
        LOG.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
