"""Fixtures for the job tests: a migrated SQLite database, a job store, fake models, jobs built in the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import BatchJobCreate, BatchJobItemCreate, new_id
from kernel.errors import ServiceError, error_to_dict
from services.db.logs import create_batch_job
from services.jobs.processing import ChunkProcessor, ImageLimits, RetryPolicy
from services.jobs.store import ImageStore
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from tests.unit.fakes import image_bytes


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "jobs")


def png(value: int, size: int = 8) -> bytes:
    """A small PNG whose pixels are all ``value`` (different values, different images)."""
    return image_bytes(Image.fromarray(np.full((size, size, 3), value, np.uint8)), "PNG")


class FakeModels:
    """Answers each item from its first pixel; records every call. ``fail`` maps a pixel value to an error."""

    def __init__(self, fail: dict[int, ServiceError] | None = None, raise_error: Exception | None = None) -> None:
        self.fail = fail or {}
        self.raise_error = raise_error
        self.calls: list[tuple[str, list[int]]] = []

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        values = [int(item.image[0, 0, 0]) for item in items]
        self.calls.append((model, values))
        if self.raise_error is not None:
            raise self.raise_error
        outcomes = []
        for value in values:
            if value in self.fail:
                outcomes.append(Outcome(error=error_to_dict(self.fail[value])))
                continue
            result = {"predictions": [{"class_id": value, "label": f"label-{value}", "score": 0.9}]}
            prediction = Prediction(
                model=model, version="v1", precision="fp32", result=result, timings_ms={"predict": 1}
            )
            outcomes.append(Outcome(prediction=prediction))
        return outcomes


MakeJob = Callable[..., str]


@pytest.fixture
def make_job(engine: Engine, store: ImageStore) -> MakeJob:
    """Store images and a job over them (``task`` classify); returns the job id."""

    def make(images: list[bytes], *, task: str = "classify", request_id: str = "req-1") -> str:
        items = []
        job_id = new_id()
        for index, data in enumerate(images):
            key, sha256 = store.put(data, job_id=job_id)
            items.append(
                BatchJobItemCreate(
                    item_index=index,
                    filename=f"{index}.png",
                    image_sha256=sha256,
                    input_uri=key,
                    content_type="image/png",
                )
            )
        with Session(engine) as session:
            job = create_batch_job(
                session=session,
                job=BatchJobCreate(task=task, params={"top_k": 1}, request_id=request_id),
                items=items,
                job_id=job_id,
            )
            session.commit()
            return job.id

    return make


@pytest.fixture
def models() -> FakeModels:
    return FakeModels()


@pytest.fixture
def processor(engine: Engine, store: ImageStore, models: FakeModels) -> ChunkProcessor:
    return ChunkProcessor(
        engine=engine,
        store=store,
        models=models,
        limits=ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20),
        policy=RetryPolicy(max_retries=2, base_s=1.0, max_s=10.0, max_worker_losses=2),
        rand=lambda: 1.0,
    )
