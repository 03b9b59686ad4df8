"""The reference profile of one model version: what its validation images looked like to the drift check.

A profile holds samples (not summaries) of every feature :func:`~services.drift.features.request_features`
yields, because the two-sample tests of services/drift/detect.py compare samples. It is a small JSON file
(at most ``max_samples`` images, rounded floats) under ``artifacts/drift/<model>-<version>.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from services.drift.features import IMAGE_FEATURES


class ReferenceProfile(BaseModel):
    """The reference of one model version (a JSON file)."""

    model: str
    version: str
    source: str  # where the images came from, for a human reading the file
    n: int  # images in the profile
    created_at: datetime
    image: dict[str, list[float]]  # sample values per image feature
    confidence: list[float]  # top-1 scores of the answers that had one
    labels: dict[str, int]  # predicted-class histogram (counts)
    sketch: list[list[float]] | None  # sample sketches; None for a family without one
    extra: dict[str, Any] = Field(default_factory=dict)  # free-form provenance (split rule, seed)

    def save(self, path: Path) -> None:
        """Write the profile as JSON (folders created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`."""
        return cls.model_validate_json(path.read_text())


def reference_path(directory: Path, model: str, version: str) -> Path:
    """Where the profile of ``model`` ``version`` lives: ``<directory>/<model>-<version>.json``."""
    return Path(directory) / f"{model}-{version}.json"


def build_reference(
    model: str,
    version: str,
    rows: Sequence[dict[str, Any]],
    *,
    source: str,
    max_samples: int = 2000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """A profile from ``request_features()`` dictionaries of validation images.

    Args:
        model: The model's name (``classifier``).
        version: The version the rows were answered by.
        rows: One ``request_features()`` dictionary per image.
        source: A description of the images, kept in the file.
        max_samples: At most this many rows are kept: a seeded sample without replacement when there are more.
        seed: Seed of that sample.
        extra: Provenance kept in the file.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("a reference needs at least one row")
    if len(rows) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_samples, replace=False))
        rows = [rows[int(i)] for i in keep]
    sketches = [row["sketch"] for row in rows if row.get("sketch") is not None]
    return ReferenceProfile(
        model=model,
        version=version,
        source=source,
        n=len(rows),
        created_at=datetime.now(UTC),
        image={name: [float(row["image"][name]) for row in rows] for name in IMAGE_FEATURES},
        confidence=[float(row["confidence"]) for row in rows if row.get("confidence") is not None],
        labels=dict(sorted(Counter(str(row["label"]) for row in rows if row.get("label") is not None).items())),
        sketch=[[float(v) for v in s] for s in sketches] or None,
        extra=dict(extra or {}),
    )
