"""The shell every model service shares: a batchable ``infer`` and a ``status``.

Each model service (classifier.py, detector.py, embedder.py) owns one model family,
loads its ONNX sessions once in ``__init__`` and scales on its own. Adaptive batching
merges concurrent ``infer`` calls into one ONNX Runtime run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml

from kernel.logging import configure_logging
from services.config import get_settings
from services.dispatch import run_when_free
from services.models.runtime import DEMAND
from services.models.worker import InferenceItem, ModelWorker, Outcome, build_pool
from services.process import configure_heap, freeze_startup_objects
from services.tracing import request_spans

SETTINGS = get_settings()
# Model services run one process each; ONNX Runtime uses the cores (ort_intra_op_threads).
SERVICE_CONFIG: dict[str, Any] = {
    "workers": 1,
    "traffic": {"timeout": 60, "max_concurrency": 256},
    "logging": {"access": {"enabled": SETTINGS.bentoml_access_log}},
}


def service_config(name: str) -> dict[str, Any]:
    """``@bentoml.service``'s configuration of the model service ``name``: BentoML's request spans only where
    tracing is configured (services/tracing.py)."""
    return {"name": name, **SERVICE_CONFIG, "tracing": request_spans(name)}


# Adaptive batching of every batchable model-service API (tuned in benchmarks/reports/serving.md): a batch starts as
# soon as the model is free, never held back for calls that may come (ADR 0020).
run_when_free()
BATCHING: dict[str, Any] = {
    "batchable": SETTINGS.batching_enabled,
    "max_batch_size": SETTINGS.max_batch_size,
    "max_latency_ms": SETTINGS.max_latency_ms,
}


class ModelService:
    """Base of the model services; subclasses set ``model_name``."""

    model_name: ClassVar[str]

    def __init__(self) -> None:
        from services.models import resample

        configure_logging(SETTINGS.log_level, SETTINGS.log_json)
        configure_heap(SETTINGS.malloc_mmap_threshold_bytes, SETTINGS.malloc_trim_interval_s)
        resample.configure(SETTINGS.native_resample)
        self.worker = ModelWorker(build_pool(self.model_name, SETTINGS))
        self.worker.pool.warm_up()  # before the worker reports ready: the first request pays no first-use cost
        freeze_startup_objects(SETTINGS.gc_freeze_at_start)

    @bentoml.api(**BATCHING)
    def infer(self, items: list[InferenceItem]) -> list[Outcome]:
        """Run the model on a batch of validated images; one outcome per image."""
        with DEMAND.serving(len(items)):  # a batch of one, alone, may take the model's solo session
            return self.worker.run(items)

    @bentoml.api
    def status(self) -> dict[str, Any]:
        """Versions, stages, load state and readiness of this model."""
        return self.worker.pool.status()
