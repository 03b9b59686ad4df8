"""The in-memory FAISS index behind every gallery store: exact below a size threshold, HNSW above it.

Labels are the store's int64 row ids (SQLite ``row_id``, PostgreSQL ``seq``). Exact search
(``IndexIDMap2(IndexFlatIP)``) removes in place. HNSW cannot remove a node, so a removal there is a
tombstone: searches over-fetch and drop tombstoned labels, and the graph is rebuilt from its own stored
vectors once tombstones pass ``tombstone_fraction`` of it (benchmarks/reports/gallery.md measures both
kinds at 100,000 vectors).

A search may expand its queries first (``expand``: average query expansion, weighted by similarity): each query
plus its ``expand`` nearest live vectors, each weighted by its non-negative cosine with the query, normalised, is
what is searched. Where a query's neighbours mostly share a class, this pulls it towards that class
(training/evaluate.py measures it; docs/adr/0015-query-expansion-for-the-class-embedder.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np


def expand_queries(queries: np.ndarray, scores: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Query expansion: each query (Q x D) plus its neighbours (Q x K x D) weighted by their cosine with it (Q x K,
    negatives and missing ones, -inf, weigh 0), L2-normalised. The gallery index and training/evaluate.py both use it.
    """
    weights = np.clip(scores, 0.0, None).astype(np.float32)
    summed = queries + np.einsum("qk,qkd->qd", weights, neighbours)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.ascontiguousarray(summed / np.where(norms > 0, norms, 1.0), dtype=np.float32)


@dataclass(frozen=True)
class IndexParams:
    """When to switch to HNSW, and its graph parameters (``ServingSettings.gallery_*``)."""

    hnsw_threshold: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    tombstone_fraction: float = 0.1


class AdaptiveIndex:
    """Cosine (inner product over L2-normalised vectors) search over labelled vectors of one dimension.

    Not thread-safe: the gallery stores hold their own lock around every call.
    """

    def __init__(self, dim: int, params: IndexParams | None = None) -> None:
        self.dim = dim
        self.params = params or IndexParams()
        self._index: Any = self._exact()
        self._hnsw = False
        self._tombstones: set[int] = set()

    @property
    def kind(self) -> str:
        """``exact`` or ``hnsw``."""
        return "hnsw" if self._hnsw else "exact"

    @property
    def tombstones(self) -> int:
        """Removed labels still in the HNSW graph."""
        return len(self._tombstones)

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def _exact(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _graph(self) -> Any:
        inner = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = self.params.ef_construction
        inner.hnsw.efSearch = self.params.ef_search
        return faiss.IndexIDMap2(inner)  # IDMap2: a vector can be read back by its label (query expansion)

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add vectors (N x dim, float32) under their labels; switches to HNSW past the threshold."""
        if len(vectors) == 0:
            return
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), labels.astype(np.int64))
        if not self._hnsw and len(self) >= self.params.hnsw_threshold:
            self._rebuild()

    def remove(self, labels: np.ndarray) -> None:
        """Forget these labels (unknown labels are ignored)."""
        if not self._hnsw:
            self._index.remove_ids(labels.astype(np.int64))
            return
        known = set(faiss.vector_to_array(self._index.id_map).tolist())
        self._tombstones.update(int(label) for label in labels if int(label) in known)
        if self._tombstones and len(self._tombstones) > self.params.tombstone_fraction * self._index.ntotal:
            self._rebuild()

    def reset(self) -> None:
        """Forget everything (back to exact search)."""
        self._index, self._hnsw, self._tombstones = self._exact(), False, set()

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        """The live (vectors, labels) held by the current index."""
        labels = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if not len(labels):
            return np.zeros((0, self.dim), np.float32), labels
        vectors = self._index.index.reconstruct_n(0, int(self._index.ntotal))
        if self._tombstones:
            live = ~np.isin(labels, np.fromiter(self._tombstones, dtype=np.int64))
            labels, vectors = labels[live], vectors[live]
        return np.ascontiguousarray(vectors, dtype=np.float32), labels

    def _rebuild(self) -> None:
        """A fresh index of the kind its live size calls for, without tombstones."""
        vectors, labels = self._stored()
        self._hnsw = len(labels) >= self.params.hnsw_threshold
        self._index, self._tombstones = (self._graph() if self._hnsw else self._exact()), set()
        if len(labels):
            self._index.add_with_ids(vectors, labels)

    def search(self, queries: np.ndarray, top_k: int, expand: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels (Q x k, k = min(top_k, live size)) of the nearest live vectors, best first.

        ``expand`` > 0 searches each query expanded by its ``expand`` nearest vectors (the module's docstring); the
        scores are then cosines with the expanded query.
        """
        if expand > 0 and len(self):
            queries = self.expanded(queries, expand)
        return self._nearest(queries, top_k)

    def expanded(self, queries: np.ndarray, expand: int) -> np.ndarray:
        """Each query plus its ``expand`` nearest live vectors weighted by their non-negative cosine, L2-normalised."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, labels = self._nearest(queries, expand)
        found = labels >= 0
        neighbours = np.zeros((*labels.shape, self.dim), np.float32)
        if found.any():
            neighbours[found] = self._index.reconstruct_batch(labels[found])
        return expand_queries(queries, np.where(found, scores, -np.inf), neighbours)

    def _nearest(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(top_k, len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if not self._tombstones:
            scores, labels = self._index.search(queries, k)
            return scores, labels
        return self._search_live(queries, k)

    def _search_live(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Over-fetch past tombstones, doubling until every query has ``k`` live labels (or all were seen)."""
        dead = np.fromiter(self._tombstones, dtype=np.int64)
        fetch = k + min(len(dead), max(k, 16))
        while True:
            fetch = min(fetch, int(self._index.ntotal))
            scores, labels = self._index.search(queries, fetch)
            live = ~np.isin(labels, dead) & (labels >= 0)
            if live.sum(axis=1).min() >= k or fetch >= self._index.ntotal:
                break
            fetch *= 2
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_labels = np.full((len(queries), k), -1, np.int64)
        for row in range(len(queries)):
            kept = np.flatnonzero(live[row])[:k]
            out_scores[row, : len(kept)], out_labels[row, : len(kept)] = scores[row, kept], labels[row, kept]
        return out_scores, out_labels
