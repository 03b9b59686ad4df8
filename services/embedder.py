"""The embedder service: EfficientNet-Lite0 pooled features and the gallery index."""

from __future__ import annotations

from typing import Any

import bentoml

from kernel.errors import ServiceError, error_to_dict
from services.index.search import SearchEngine, SearchItem, SearchOutcome
from services.model_service import BATCHING, SETTINGS, ModelService, service_config
from services.models.worker import InferenceItem


@bentoml.service(**service_config("embedder"))
class EmbedderService(ModelService):
    model_name = "embedder"

    def __init__(self) -> None:
        # FAISS and the database drivers are the worker's: BentoML's supervisor imports this module too.
        from services.index.store import open_gallery

        super().__init__()
        self.engine = SearchEngine(self.worker, open_gallery(SETTINGS))

    @bentoml.api(**BATCHING)
    def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        """Nearest gallery images of each query image."""
        return self.engine.search(items)

    @bentoml.api
    def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        """Embed one image and store it in the gallery."""
        try:
            return self.engine.add(item, metadata)
        except ServiceError as exc:
            return {"error": error_to_dict(exc)}

    @bentoml.api
    def gallery_remove(self, item_id: str) -> bool:
        """Remove one gallery image; False if it was not there."""
        return self.engine.remove(item_id)

    @bentoml.api
    def gallery_size(self) -> int:
        """Number of gallery images."""
        return self.engine.size()
