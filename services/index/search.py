"""Similarity search: embed with the embedder's worker, look up in the gallery index.

Shared by the embedder BentoML service and the api's in-process backend.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from kernel.errors import ServiceError, error_from_dict, error_to_dict
from services.index.base import VectorIndex, check_embedder
from services.metrics import GALLERY_SIZE
from services.models.contract import Prediction
from services.models.spec import MAX_QUERY_EXPANSION
from services.models.worker import InferenceItem, ModelWorker, Outcome


class SearchItem(InferenceItem):
    """An image to look up, with how many neighbours to return and how far to expand the query.

    ``expand``: the gallery neighbours added to the query before the search (services/index/vectors.py); None takes
    the embedder version's ``query_expansion`` (its spec), 0 searches with the query alone.
    """

    top_k: int = Field(default=5, ge=1, le=100)
    expand: int | None = Field(default=None, ge=0, le=MAX_QUERY_EXPANSION)


class SearchOutcome(BaseModel):
    """Neighbours of one query, or its error."""

    prediction: Prediction | None = None
    hits: list[dict[str, Any]] = []
    gallery_size: int = 0
    expand: int = 0  # the gallery neighbours added to the query
    error: dict[str, Any] | None = None


class SearchEngine:
    """Embeds images and answers nearest-neighbour queries over the gallery."""

    def __init__(self, worker: ModelWorker, index: VectorIndex) -> None:
        self.worker = worker
        self.index = index
        GALLERY_SIZE.set(len(index))

    def embed(self, items: list[InferenceItem]) -> list[Outcome]:
        return self.worker.run(items)

    def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        """Nearest gallery images for each item; errors stay per item."""
        outcomes = [self._comparable(o) for o in self.worker.run(list(items))]
        answered = [i for i, o in enumerate(outcomes) if o.prediction is not None]
        results = [SearchOutcome(error=o.error) for o in outcomes]
        if not answered:
            return results
        size = len(self.index)
        groups: dict[int, list[int]] = defaultdict(list)  # one index search per expansion asked for
        for i in answered:
            groups[self._expansion(items[i], outcomes[i])].append(i)
        for expand, members in groups.items():
            queries = np.asarray([_vector(outcomes[i]) for i in members], dtype=np.float32)
            hit_lists = self.index.search(queries, max(items[i].top_k for i in members), expand)
            for i, hits in zip(members, hit_lists, strict=True):
                results[i] = SearchOutcome(
                    prediction=outcomes[i].prediction,
                    hits=[{"id": h.id, "score": h.score, "metadata": h.metadata} for h in hits[: items[i].top_k]],
                    gallery_size=size,
                    expand=expand,
                )
        return results

    def _expansion(self, item: SearchItem, outcome: Outcome) -> int:
        """The request's ``expand``, else the answering version's ``query_expansion``."""
        if item.expand is not None:
            return item.expand
        prediction = outcome.prediction
        loaded = self.worker.pool.versions.get(prediction.version) if prediction is not None else None
        head = loaded.spec.embedding if loaded is not None else None
        return head.query_expansion if head is not None else 0

    def add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        """Embed one image and store it with its metadata."""
        (outcome,) = self.worker.run([item])
        if outcome.prediction is None:
            raise error_from_dict(outcome.error or {})
        vector = np.asarray([_vector(outcome)], dtype=np.float32)
        (item_id,) = self.index.add(vector, [metadata], embedder=embedding_space(outcome.prediction))
        GALLERY_SIZE.set(len(self.index))
        return {"id": item_id, "model": outcome.prediction.model, "version": outcome.prediction.version}

    def _comparable(self, outcome: Outcome) -> Outcome:
        """The outcome, or a 409 in its place when its vector is not in the gallery's embedding space."""
        if outcome.prediction is None:
            return outcome
        try:
            check_embedder(self.index.embedder, embedding_space(outcome.prediction))
        except ServiceError as exc:
            return Outcome(error=error_to_dict(exc))
        return outcome

    def remove(self, item_id: str) -> bool:
        removed = self.index.remove(item_id)
        GALLERY_SIZE.set(len(self.index))
        return removed

    def size(self) -> int:
        return len(self.index)


def _vector(outcome: Outcome) -> list[float]:
    if outcome.prediction is None:
        raise ServiceError("embedding missing")
    return list(outcome.prediction.result["embedding"])


def embedding_space(prediction: Prediction) -> str:
    """The embedding space of a vector: the model version (INT8 and FP32 files of one version share it)."""
    return f"{prediction.model}:{prediction.version}"
