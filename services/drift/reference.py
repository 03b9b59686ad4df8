"""PLACEHOLDER (h-driftserve): h-driftcore owns this module; the integrator replaces it with the real one.

Only the interface of DRIFT_INTERFACE.md, with a simple implementation, so the serving side can be built and tested.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.drift.features import IMAGE_FEATURES


class ReferenceProfile(BaseModel):
    """The reference of one model version, a JSON file."""

    model: str
    version: str
    source: str
    n: int
    created_at: datetime
    image: dict[str, list[float]]
    confidence: list[float]
    labels: dict[str, int]
    sketch: list[list[float]] | None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json())

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        return cls.model_validate_json(path.read_text())


def build_reference(
    model: str,
    version: str,
    rows: Sequence[dict[str, Any]],
    *,
    source: str,
    max_samples: int = 2000,
    seed: int = 0,
) -> ReferenceProfile:
    """A reference from ``request_features()`` dicts (a seeded sample of at most ``max_samples``)."""
    sample = list(rows)
    if len(sample) > max_samples:
        sample = random.Random(seed).sample(sample, max_samples)
    sketches = [r["sketch"] for r in sample if r.get("sketch") is not None]
    return ReferenceProfile(
        model=model,
        version=version,
        source=source,
        n=len(sample),
        created_at=datetime.now(UTC),
        image={name: [float(r["image"][name]) for r in sample] for name in IMAGE_FEATURES},
        confidence=[float(r["confidence"]) for r in sample if r.get("confidence") is not None],
        labels=dict(Counter(str(r["label"]) for r in sample if r.get("label") is not None)),
        sketch=sketches or None,
    )


def reference_path(directory: Path, model: str, version: str) -> Path:
    """``<directory>/<model>-<version>.json``."""
    return directory / f"{model}-{version}.json"
