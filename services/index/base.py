"""The vector-index interface the embedder service talks to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kernel.errors import GalleryModelMismatch


@dataclass(frozen=True)
class Hit:
    """One search result: gallery id, cosine similarity, stored metadata."""

    id: str
    score: float
    metadata: dict[str, Any]


def _mismatch(gallery: str | None, query: str) -> str:
    return (
        f"the gallery holds vectors of {gallery}, this image was embedded by {query}: their similarities mean "
        "nothing; rebuild the gallery with the new version (python -m services.index.build_gallery) or pin "
        f"the embedder to {gallery}"
    )


def check_embedder(gallery: str | None, query: str) -> None:
    """Raise :class:`GalleryModelMismatch` when a query from ``query`` cannot be compared with the gallery."""
    if gallery is not None and gallery != query:
        raise GalleryModelMismatch(_mismatch(gallery, query), gallery=gallery)


def rows_to_add(
    vectors: np.ndarray, metadata: list[dict[str, Any]], ids: list[str] | None
) -> tuple[np.ndarray, list[str]]:
    """What every store's ``add`` takes first: the vectors as N x D float32 and an id for each (new ones if None)."""
    vectors = np.atleast_2d(np.ascontiguousarray(vectors, dtype=np.float32))
    if len(metadata) != len(vectors):
        raise ValueError("one metadata dict per vector")
    return vectors, ids or [uuid.uuid4().hex for _ in range(len(vectors))]


class VectorIndex(Protocol):
    """Add, remove and search L2-normalised vectors by cosine similarity."""

    @property
    def embedder(self) -> str | None:
        """The ``model:version`` whose embedding space the stored vectors are in (None: empty or unknown)."""
        ...

    def add(
        self,
        vectors: np.ndarray,
        metadata: list[dict[str, Any]],
        ids: list[str] | None = None,
        *,
        embedder: str | None = None,
    ) -> list[str]:
        """Store vectors (N x D) with their metadata; returns their ids.

        Raises:
            GalleryModelMismatch: ``embedder`` differs from the one that made the stored vectors.
        """
        ...

    def contains(self, item_id: str) -> bool:
        """Whether an entry with this id is stored."""
        ...

    def remove(self, item_id: str) -> bool:
        """Delete one entry; False if it was not there."""
        ...

    def search(self, queries: np.ndarray, top_k: int, expand: int = 0) -> list[list[Hit]]:
        """The ``top_k`` nearest entries of each query (Q x D).

        ``expand`` > 0: each query is first expanded by its ``expand`` nearest entries, weighted by their cosine
        (services/index/vectors.py); the hits' scores are then cosines with the expanded query.
        """
        ...

    def __len__(self) -> int: ...
