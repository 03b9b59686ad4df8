"""The local gallery store: a cosine index in FAISS, persisted in one SQLite file.

SQLite is the source of truth (id, vector, metadata); the in-memory index
(:class:`services.index.vectors.AdaptiveIndex`: exact below ``gallery_hnsw_threshold``, HNSW above) is
rebuilt from it at start-up and kept in step on every add and remove. One process per file: replicas
that must share a gallery use :mod:`services.index.postgres` (docs/adr/0012-gallery-in-postgresql.md).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.index.base import Hit, check_embedder, rows_to_add
from services.index.vectors import AdaptiveIndex, IndexParams

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL
)
"""
# Facts about the whole gallery; "embedder": the model:version whose embedding space the vectors are in.
_INFO_SCHEMA = "CREATE TABLE IF NOT EXISTS gallery_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def hits(
    scores: np.ndarray, labels: np.ndarray, ids: dict[int, str], meta: dict[int, dict[str, Any]]
) -> list[list[Hit]]:
    """The search results of an :class:`AdaptiveIndex`, as hits with their gallery ids and metadata."""
    return [
        [
            Hit(id=ids[int(r)], score=float(s), metadata=meta[int(r)])
            for s, r in zip(score_row, id_row, strict=True)
            if r >= 0
        ]
        for score_row, id_row in zip(scores, labels, strict=True)
    ]


class IndexedEntries:
    """The in-memory half both gallery stores share (this SQLite one and services/index/postgres.py).

    An :class:`AdaptiveIndex` over row numbers, with each row's gallery id and metadata, guarded by ``_lock``;
    the stores fill them from their own storage.
    """

    dim: int | None
    _lock: threading.Lock
    _index: AdaptiveIndex | None
    _ids: dict[int, str]
    _meta: dict[int, dict[str, Any]]

    def search(self, queries: np.ndarray, top_k: int, expand: int = 0) -> list[list[Hit]]:
        """The ``top_k`` nearest entries of each query (``expand``: query expansion, services/index/vectors.py)."""
        queries = np.atleast_2d(np.ascontiguousarray(queries, dtype=np.float32))
        with self._lock:
            if self._index is None or len(self._index) == 0:
                return [[] for _ in range(len(queries))]
            if queries.shape[1] != self.dim:
                raise ValueError(f"{queries.shape[1]}-d queries for a gallery of {self.dim}-d vectors")
            scores, row_ids = self._index.search(queries, top_k, expand)
            return hits(scores, row_ids, self._ids, self._meta)

    # Both read under ``_lock`` like every other use of the index: a replica applying another's add must not be seen
    # with the rows counted but the switch to HNSW that follows them not yet made.
    @property
    def index_kind(self) -> str:
        """``exact`` or ``hnsw`` (``exact`` while empty)."""
        with self._lock:
            return self._index.kind if self._index is not None else "exact"

    def __len__(self) -> int:
        with self._lock:
            return len(self._index) if self._index is not None else 0


class GalleryIndex(IndexedEntries):
    """An :class:`AdaptiveIndex` over vectors stored in one SQLite file.

    ``dim``: the vectors' dimension; None takes it from the stored vectors, or from the first ones added
    (embedders differ: 1280-d pooled features, 200-d class probabilities), and forgets it when the
    gallery is emptied, so a gallery rebuilt by another embedder takes that one's dimension.
    """

    def __init__(self, path: Path, dim: int | None = None, params: IndexParams | None = None) -> None:
        self.params = params or IndexParams()
        self.fixed_dim = dim
        self.dim = dim
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.execute(_INFO_SCHEMA)
        self._index = self._new_index(dim)
        self._ids: dict[int, str] = {}
        self._meta: dict[int, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        rows = self._db.execute("SELECT row_id, id, vector, metadata FROM gallery ORDER BY row_id").fetchall()
        if not rows:
            return
        vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        if self.dim is None:
            self.dim = vectors.shape[1]
        if vectors.shape[1] != self.dim:
            raise ValueError(f"{self.path} holds {vectors.shape[1]}-d vectors; expected {self.dim}")
        row_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        self._index = AdaptiveIndex(self.dim, self.params)
        self._index.add(vectors, row_ids)
        self._ids = {r[0]: r[1] for r in rows}
        self._meta = {r[0]: json.loads(r[3]) for r in rows}

    def _new_index(self, dim: int | None) -> AdaptiveIndex | None:
        return AdaptiveIndex(dim, self.params) if dim is not None else None

    def _forget_dim(self) -> None:
        """An empty gallery with no configured dimension takes the next embedder's."""
        if self.fixed_dim is None:
            self.dim, self._index = None, None

    @property
    def embedder(self) -> str | None:
        """The ``model:version`` that embedded the stored vectors; None for an empty (or pre-stamp) gallery."""
        row = self._db.execute("SELECT value FROM gallery_info WHERE key = 'embedder'").fetchone()
        return str(row[0]) if row else None

    def add(
        self,
        vectors: np.ndarray,
        metadata: list[dict[str, Any]],
        ids: list[str] | None = None,
        *,
        embedder: str | None = None,
    ) -> list[str]:
        vectors, new_ids = rows_to_add(vectors, metadata, ids)
        with self._lock:
            self._db.execute("BEGIN")
            index = self._index
            if index is None:
                self.dim, self._index = vectors.shape[1], (index := AdaptiveIndex(vectors.shape[1], self.params))
            if vectors.shape[1] != self.dim:
                raise ValueError(f"{vectors.shape[1]}-d vectors for a gallery of {self.dim}-d vectors")
            try:
                if embedder is not None and len(index) == 0:
                    self._db.execute("INSERT OR REPLACE INTO gallery_info VALUES ('embedder', ?)", (embedder,))
                elif embedder is not None:
                    check_embedder(self.embedder, embedder)
                row_ids = []
                for item_id, vector, meta in zip(new_ids, vectors, metadata, strict=True):
                    cursor = self._db.execute(
                        "INSERT INTO gallery (id, vector, metadata) VALUES (?, ?, ?)",
                        (item_id, vector.tobytes(), json.dumps(meta)),
                    )
                    row_ids.append(int(cursor.lastrowid or 0))
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            index.add(vectors, np.asarray(row_ids, dtype=np.int64))
            self._ids.update(zip(row_ids, new_ids, strict=True))
            self._meta.update(zip(row_ids, metadata, strict=True))
        return new_ids

    def contains(self, item_id: str) -> bool:
        """Whether an entry with this id is stored."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM gallery WHERE id = ?", (item_id,)).fetchone() is not None

    def remove(self, item_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT row_id FROM gallery WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM gallery WHERE row_id = ?", (row[0],))
            last = self._index is not None and len(self._index) == 1
            if last:  # the last one: the next image may come from any embedder
                self._db.execute("DELETE FROM gallery_info WHERE key = 'embedder'")
            if self._index is not None:
                self._index.remove(np.asarray([row[0]], dtype=np.int64))
            self._ids.pop(row[0], None)
            self._meta.pop(row[0], None)
            if last:
                self._forget_dim()
            return True

    def clear(self) -> None:
        """Remove every entry (and the embedder stamp)."""
        with self._lock:
            self._db.execute("DELETE FROM gallery")
            self._db.execute("DELETE FROM gallery_info")
            if self._index is not None:
                self._index.reset()
            self._ids.clear()
            self._meta.clear()
            self._forget_dim()

    def close(self) -> None:
        self._db.close()
