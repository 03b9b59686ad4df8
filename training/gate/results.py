"""What the gate measures of one model version: per precision metrics, calibration, worst classes, latency, parity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClassScore:
    """One class's score in the version's task metric (accuracy, AP or precision@10) and its support."""

    name: str
    score: float
    count: int


@dataclass
class PrecisionResult:
    """One ONNX file (one precision) of a version on the held-out data.

    Attributes:
        metrics: The task metrics as fractions (``top1``/``top5``, ``map50_95``/``map50``, ``precision_at_10``).
        ece: Expected calibration error (fraction), or None where the task has no confidences (embedder).
        worst: The ten worst classes by the per-class metric, worst first.
        outputs: Per-sample outputs kept for report extensions (a drift profile, agreement): ``top1`` class
            indices and ``confidence`` (classifier), ``embeddings`` (embedder), ``scores`` (detector).
    """

    metrics: dict[str, float]
    ece: float | None
    worst: list[ClassScore]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ParityResult:
    """ONNX Runtime FP32 vs PyTorch on the same preprocessed images; ``max_abs_diff`` None when not measured."""

    max_abs_diff: float | None
    source: str
    images: int = 0


@dataclass
class VersionResult:
    """Everything measured of one version in the gate's run."""

    name: str
    version: str
    stage: str
    precisions: dict[str, PrecisionResult]
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> p50_ms, p95_ms
    parity: ParityResult | None = None
    files: dict[str, str] = field(default_factory=dict)  # precision -> sha256
    source: str = ""  # the spec's account of where the files came from

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready: everything but the per-sample outputs."""
        return {
            "tag": self.tag,
            "stage": self.stage,
            "source": self.source,
            "precisions": {
                p: {
                    "metrics": r.metrics,
                    "ece": r.ece,
                    "worst_classes": [vars(c) for c in r.worst],
                }
                for p, r in self.precisions.items()
            },
            "latency_ms": self.latency_ms,
            "parity": vars(self.parity) if self.parity else None,
            "sha256": self.files,
        }
