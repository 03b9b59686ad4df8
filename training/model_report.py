"""The metrics JSON of a model version, as model cards and benchmarks read it.

A metrics file holds one :class:`ModelReport`, or a list of them when one export serves several models (the Lite0 file
is classifier v1 and embedder v1). :func:`load_reports` merges in two files beside it when present:
``quantization.json`` (INT8 results, :func:`merge_quantization`) and the latency that ``benchmarks/formats.py``
measured on the same FP32 file (``benchmarks/reports/formats.json``, matched by SHA-256, :func:`attach_latency`).
training/model_card.py renders the result.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kernel.paths import display_path
from services.models.catalogue import CATALOGUE
from services.models.spec import Task

LOG = logging.getLogger("training.model_report")
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
        reports = [attach_latency(r, formats, display_path(formats_path)) for r in reports]
    return reports


def version_key(version: str) -> tuple[int, str]:
    """Sorts v2 before v10."""
    digits = re.findall(r"\d+", version)
    return (int(digits[0]) if digits else -1, version)
