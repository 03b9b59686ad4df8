"""Model cards generated from a model version's metrics JSON.

Usage::

    python -m training.model_card --metrics artifacts/yolox_nano/metrics.json --out bentos/detector/MODEL_CARD.md
    python -m training.model_card --metrics artifacts/efficientnet_lite0_imagenet1k/metrics.json --model embedder
    python -m training.model_card --all    # artifacts/*/metrics.json, */*.metrics.json -> bentos/*/MODEL_CARD.md
    python -m training.model_card --all --check    # exit 1 when a committed card is stale

A metrics file holds one :class:`ModelReport`, or a list of them when one export serves several
models (the Lite0 file is classifier v1 and embedder v1). Two files beside it are merged in when
present: ``quantization.json`` (INT8 results, see :func:`merge_quantization`) and the latency that
``benchmarks/formats.py`` measured on the same FP32 file (``benchmarks/reports/formats.json``,
matched by SHA-256). Numbers come only from these files: a field nobody measured stays absent and
the card says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.models.catalogue import CATALOGUE
from services.models.spec import Task

LOG = logging.getLogger("training.model_card")
REPO = Path(__file__).resolve().parents[1]
FORMATS_JSON = REPO / "benchmarks" / "reports" / "formats.json"
QUANTIZATION_JSON = "quantization.json"

# The models a card can describe and the task each does: the serving catalogue's.
TASK_OF: dict[str, str] = {entry.name: entry.task for entry in CATALOGUE}
# How metric keys read in a card (the keys are training/evaluate.py's).
METRIC_NAMES = {
    "map50_95": "mAP@0.5:0.95",
    "map50": "mAP@0.5",
    "top1": "top-1",
    "top5": "top-5",
    "top1_1000": "top-1, all 1,000 classes",
    "top5_1000": "top-5, all 1,000 classes",
    "precision_at_10": "precision@10",
    "precision_at_10_expand_10": "precision@10, expand=10",
    "precision_at_10_expand_30": "precision@10, expand=30",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silently empty section


class DataLicence(_Strict):
    """The terms of one data set the model was trained or evaluated on."""

    name: str
    licence: str
    note: str = ""


class DataReport(_Strict):
    training: str
    evaluation: str
    licences: list[DataLicence] = Field(min_length=1)


class Metrics(_Strict):
    """Metric name -> value per precision, measured on the evaluation data."""

    fp32: dict[str, float] = Field(default_factory=dict)
    int8: dict[str, float] = Field(default_factory=dict)


class LatencyPoint(_Strict):
    p50_ms: float
    p95_ms: float
    throughput: float  # images per second


class FileReport(_Strict):
    name: str
    bytes: int | None = None
    sha256: str | None = None
    note: str = ""


class Provenance(_Strict):
    """Where the numbers come from: the commit and command that produced them."""

    commit: str | None = None
    date: str | None = None
    command: str | None = None


class ModelReport(_Strict):
    """Everything a model card says about one model version."""

    model: str
    version: str
    task: Task
    title: str  # e.g. "YOLOX-Nano, COCO-80"
    arch: str
    summary: str
    intended_use: str
    out_of_scope: list[str] = Field(default_factory=list)
    pipeline: dict[str, str] = Field(default_factory=dict)  # "Preprocessing", "Output", ... -> text
    data: DataReport
    model_licence: str
    source: str
    headline: str | None = None  # the metric quoted in summaries; default: the first FP32 metric
    metrics: Metrics = Field(default_factory=Metrics)
    metric_notes: list[str] = Field(default_factory=list)
    checks: dict[str, float] = Field(default_factory=dict)  # export checks, e.g. ONNX vs PyTorch max abs diff
    deltas: dict[str, float] = Field(default_factory=dict)  # FP32 vs INT8 comparisons beyond the metrics
    latency: dict[str, dict[int, LatencyPoint]] = Field(default_factory=dict)  # format -> batch -> point
    latency_source: str | None = None
    files: dict[str, FileReport]  # precision -> file
    training: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    limitations: list[str] = Field(default_factory=list)
    failure_cases: list[str] = Field(default_factory=list)
    provenance: Provenance

    @model_validator(mode="after")
    def _consistent(self) -> ModelReport:
        if self.model not in TASK_OF:
            raise ValueError(f"no model {self.model!r} in the catalogue ({', '.join(TASK_OF)})")
        if TASK_OF[self.model] != self.task:
            raise ValueError(f"a {self.model} does {TASK_OF[self.model]}, not {self.task}")
        if "fp32" not in self.files:
            raise ValueError("files must name the fp32 file")
        if self.headline is not None and self.headline not in self.metrics.fp32:
            raise ValueError(f"headline {self.headline!r} is not an fp32 metric")
        return self

    @property
    def headline_metric(self) -> str | None:
        """The metric quoted in summaries (benchmarks/formats.py's accuracy column)."""
        return self.headline or next(iter(self.metrics.fp32), None)


def deep_merge(base: Any, extra: Any) -> Any:
    """``extra`` over ``base``: dicts merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(extra)


def merge_quantization(report: dict[str, Any], quantization: dict[str, Any]) -> dict[str, Any]:
    """Merges a ``quantization.json`` into a raw report.

    - A section keyed by the report's model (``{"detector": {...}}``) applies to that report only.
    - Keys that are :class:`ModelReport` fields of the same shape are deep-merged, e.g.
      ``{"metrics": {"int8": {"map50_95": 0.33}}, "deltas": {...}, "files": {"int8": {...}}}``.
    - ``output`` as ``training/quantize.py`` writes it (``{"file", "bytes", "sha256"}``) becomes ``files.int8``.
    - Everything else (settings, calibration, ...) is kept under ``quantization`` and listed in the card.
    """
    section = quantization.get(str(report.get("model")))
    source = section if isinstance(section, dict) else quantization
    merged = copy.deepcopy(report)
    rest: dict[str, Any] = {}
    identity = {"model", "version", "task"}
    for key, value in source.items():
        if key in identity or key in TASK_OF:
            continue
        if key == "output" and isinstance(value, dict) and "file" in value:
            int8 = {"name": value["file"], "bytes": value.get("bytes"), "sha256": value.get("sha256")}
            merged["files"] = deep_merge(merged.get("files", {}), {"int8": int8})
        elif key in ModelReport.model_fields and isinstance(merged.get(key, {}), dict) == isinstance(value, dict):
            merged[key] = deep_merge(merged.get(key), value)
        else:
            rest[key] = value
    if rest:
        merged["quantization"] = deep_merge(merged.get("quantization") or {}, rest)
    return merged


def attach_latency(report: ModelReport, formats: dict[str, Any], source: str) -> ModelReport:
    """Latency that benchmarks/formats.py measured on this report's own FP32 file (same SHA-256), never --quick runs."""
    entry = formats.get("models", {}).get(report.model, {})
    measured_sha = entry.get("files", {}).get("onnx-fp32", {}).get("sha256")
    if formats.get("settings", {}).get("quick") or not measured_sha or measured_sha != report.files["fp32"].sha256:
        return report
    latency = {
        name: result["batches"]
        for name, result in entry.get("formats", {}).items()
        if result.get("status") == "measured" and result.get("batches")
    }
    machine, threads = formats.get("machine", {}), formats.get("settings", {}).get("threads", "?")
    where = f"{source}, {machine.get('date', '?')}, {machine.get('cpu', '?')}, {threads} threads"
    return report.model_validate({**report.model_dump(), "latency": latency, "latency_source": where})


def load_reports(metrics_path: Path, formats_path: Path | None = FORMATS_JSON) -> list[ModelReport]:
    """The reports of a metrics file, with ``quantization.json`` and formats latency merged in."""
    raw = json.loads(metrics_path.read_text())
    items = raw if isinstance(raw, list) else [raw]
    quant_path = metrics_path.with_name(QUANTIZATION_JSON)
    if quant_path.is_file():
        LOG.info("merging %s", quant_path)
        quantization = json.loads(quant_path.read_text())
        items = [merge_quantization(item, quantization) for item in items]
    reports = [ModelReport.model_validate(item) for item in items]
    if formats_path is not None and formats_path.is_file():
        formats = json.loads(formats_path.read_text())
        reports = [attach_latency(r, formats, _display_path(formats_path)) for r in reports]
    return reports


def version_key(version: str) -> tuple[int, str]:
    """Sorts v2 before v10."""
    digits = re.findall(r"\d+", version)
    return (int(digits[0]) if digits else -1, version)


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


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def cards_for(metrics_files: Sequence[Path], bentos: Path, formats: Path | None) -> dict[Path, str]:
    """card path -> markdown: per model, the newest version found in ``metrics_files``."""
    newest: dict[str, tuple[ModelReport, Path]] = {}
    for path in metrics_files:
        for report in load_reports(path, formats):
            held = newest.get(report.model)
            if held is None or version_key(report.version) > version_key(held[0].version):
                newest[report.model] = (report, path)
    return {bentos / m / "MODEL_CARD.md": render(r, _display_path(p)) for m, (r, p) in sorted(newest.items())}


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
        cards = {out: render(report, _display_path(args.metrics))}
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
