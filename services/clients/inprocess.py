"""The models in this process: the api's in-process tests and a job worker without model services use it."""

from __future__ import annotations

import threading
from typing import Any

from services.config import ServingSettings
from services.index.search import SearchEngine, SearchItem, SearchOutcome
from services.index.store import open_gallery
from services.models.worker import InferenceItem, ModelWorker, Outcome, build_pool


class InProcessClient:
    """Every model in this process, each loaded on first use (a classify-only worker never loads the detector).

    Errors are not mapped: a ``ServiceError`` is the model's verdict, and anything else is a bug in this
    process that its caller reports as such (no service was unreachable).
    """

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._workers: dict[str, ModelWorker] = {}
        self._engine: SearchEngine | None = None
        self._lock = threading.Lock()  # the api calls from a threadpool: load each model once

    def worker(self, model: str) -> ModelWorker:
        """The worker of ``model``, loaded on first use."""
        worker = self._workers.get(model)
        if worker is None:
            with self._lock:
                worker = self._workers.get(model)
                if worker is None:
                    worker = self._workers[model] = ModelWorker(build_pool(model, self.settings))
        return worker

    @property
    def engine(self) -> SearchEngine:
        """The embedder's search engine over the gallery index, built on first use."""
        if self._engine is None:
            embedder = self.worker("embedder")
            with self._lock:
                if self._engine is None:
                    index = open_gallery(self.settings)
                    self._engine = SearchEngine(embedder, index)
        return self._engine

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return self.worker(model).run(items)

    def status(self, model: str) -> dict[str, Any]:
        return self.worker(model).pool.status()

    def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return self.engine.search(items)

    def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return self.engine.add(item, metadata)

    def gallery_remove(self, item_id: str) -> bool:
        return self.engine.remove(item_id)

    def gallery_size(self) -> int:
        return self.engine.size()
