"""Inference-log rows with drift features, written to a test database as the api writes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import InferenceLogCreate, utcnow
from services.db.logs import insert_inference_logs
from services.drift.features import SKETCH_DIM, request_features
from services.drift.reference import build_reference, reference_path
from services.models.contract import Prediction


def features(brightness: int, *, label: str = "cat", seed: int = 0, model: str = "classifier") -> dict[str, Any]:
    """``request_features`` of a noisy image around ``brightness``, answered ``label`` with a sketch near it."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(brightness, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
    sketch = (rng.normal(brightness / 255, 0.05, SKETCH_DIM)).tolist()
    prediction = Prediction(
        model=model,
        version="v2",
        precision="fp32",
        result={"predictions": [{"class_id": 0, "label": label, "score": float(rng.uniform(0.6, 0.9))}]},
        timings_ms={},
        sketch=sketch,
    )
    return request_features(pixels, prediction)


def bright(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Daylight photos labelled cat: the reference's kind of traffic."""
    return [features(200, label="cat" if i % 3 else "dog", seed=start + i) for i in range(count)]


def dark(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Night photos labelled otter: a clear shift from :func:`bright`."""
    return [features(25, label="otter", seed=10_000 + start + i) for i in range(count)]


def log_rows(
    engine: Engine,
    rows: Sequence[dict[str, Any] | None],
    *,
    model: str = "classifier",
    version: str | None = "v2",
    status: int = 200,
    start: datetime | None = None,
) -> None:
    """Insert one inference-log row per features dict (None: a row without features), one second apart, in order."""
    start = start or utcnow() - timedelta(hours=1)
    records = [
        InferenceLogCreate(
            route="/api/v1/classify",
            model=model,
            version=version,
            status=status,
            latency_ms=1.0,
            features=row,
            created_at=start + timedelta(seconds=i),
        )
        for i, row in enumerate(rows)
    ]
    with Session(engine) as session:
        insert_inference_logs(session=session, records=records)
        session.commit()


def save_reference(
    directory: Path, rows: Sequence[dict[str, Any]], *, model: str = "classifier", version: str = "v2"
) -> Path:
    """A reference profile of ``rows`` where the monitor looks for ``model`` ``version``'s."""
    directory.mkdir(parents=True, exist_ok=True)
    path = reference_path(directory, model, version)
    build_reference(model, version, rows, source="test").save(path)
    return path
