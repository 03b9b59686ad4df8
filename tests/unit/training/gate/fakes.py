"""Version results for the gate's unit tests, built by hand."""

from __future__ import annotations

from training.gate.results import ClassScore, ParityResult, PrecisionResult, VersionResult


def version(
    version: str = "v3",
    *,
    top1: dict[str, float] | None = None,
    ece: dict[str, float | None] | None = None,
    p95: dict[str, float] | None = None,
    parity: ParityResult | None = None,
    stage: str = "shadow",
) -> VersionResult:
    """A classifier version with the given top-1 per precision (default FP32 0.75, INT8 0.745)."""
    top1 = top1 if top1 is not None else {"fp32": 0.75, "int8": 0.745}
    ece = ece or {}
    p95 = p95 or {}
    return VersionResult(
        name="classifier",
        version=version,
        stage=stage,
        precisions={
            p: PrecisionResult(
                metrics={"top1": value, "top5": 0.9},
                ece=ece.get(p, 0.05),
                worst=[ClassScore("goldfish", 0.1, 50), ClassScore("bee", 0.2, 50)],
            )
            for p, value in top1.items()
        },
        latency_ms={p: {"p50_ms": 5.0, "p95_ms": p95.get(p, 10.0)} for p in top1},
        parity=parity,
        source=f"the {version} release",
    )
