"""The shared gallery store: PostgreSQL is the truth, each replica searches its own in-memory index.

Every write takes one transaction-scoped advisory lock, stamps the row with the next value of the
table's sequence (``seq``) and sends ``NOTIFY cv_gallery`` on commit. Each replica applies rows in
``seq`` order (``WHERE seq > last applied``): at start-up, right after its own writes, on every
notification (a listener thread with its own connection) and every ``catchup_interval_s`` (a missed
notification, or a connection cut and re-made, costs at most that long). The advisory lock makes commit
order equal ``seq`` order, so catching up by ``seq`` never skips a row that commits late.
Design and limits: docs/adr/0012-gallery-in-postgresql.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from kernel.errors import DatabaseUnavailable
from services.index.base import check_embedder, rows_to_add
from services.index.gallery import IndexedEntries
from services.index.vectors import AdaptiveIndex, IndexParams
from services.metrics import GALLERY_SIZE

log = logging.getLogger(__name__)

CHANNEL = "cv_gallery"
_POLL_S = 0.25  # how often the listener looks at the stop flag
_WRITE_LOCK = 0x6761_6C6C  # pg_advisory_xact_lock key of gallery writes ("gall")
_NEXT_SEQ = "nextval(pg_get_serial_sequence('gallery_item', 'seq'))"
_UPSERT = f"""
INSERT INTO gallery_item (id, vector, dim, meta, embedder, deleted, created_at)
VALUES (%s, %s, %s, %s, %s, false, now())
ON CONFLICT (id) DO UPDATE SET vector = EXCLUDED.vector, dim = EXCLUDED.dim, meta = EXCLUDED.meta,
    embedder = EXCLUDED.embedder, deleted = false, created_at = EXCLUDED.created_at, seq = {_NEXT_SEQ}
"""
# Removed rows come without their vector: the first load reads every row's seq, but only live vectors.
_CHANGES = """
SELECT seq, id, CASE WHEN deleted THEN NULL ELSE vector END, meta, embedder, deleted
FROM gallery_item WHERE seq > %s ORDER BY seq
"""
T = TypeVar("T")


class PostgresGallery(IndexedEntries):
    """A :class:`services.index.base.VectorIndex` over the ``gallery_item`` table (migration 0008).

    Args:
        url: A libpq URL (``postgresql://...``); a ``search_path`` may ride in it as
            ``?options=-csearch_path%3Dschema``.
        dim: The vectors' dimension; None takes the stored vectors' (see ``GalleryIndex``).
        params: When the in-memory index switches to HNSW, and its parameters.
        catchup_interval_s: Seconds between catch-ups when no notification arrives.
        connect_timeout_s: How long to wait for PostgreSQL to accept a connection.
    """

    def __init__(
        self,
        url: str,
        dim: int | None = None,
        params: IndexParams | None = None,
        *,
        catchup_interval_s: float = 5.0,
        connect_timeout_s: int = 3,
    ) -> None:
        self.url, self.fixed_dim, self.dim = url, dim, dim
        self.params = params or IndexParams()
        self.catchup_interval_s = catchup_interval_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()  # the in-memory state and last_seq
        self._write_lock = threading.Lock()  # the writer connection
        self._index: AdaptiveIndex | None = AdaptiveIndex(dim, self.params) if dim else None
        self._label: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._meta: dict[int, dict[str, Any]] = {}
        self._embedder: str | None = None
        self.last_seq = 0
        self._stop = threading.Event()
        self._writer = self._connect()
        self._apply(self._writer)
        self._listener = threading.Thread(target=self._listen, name="gallery-listen", daemon=True)
        self._listener.start()

    def _connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=autocommit, connect_timeout=self.connect_timeout_s)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable("the gallery's database cannot be reached") from exc

    # -- keeping in step -------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every change committed since the last one applied; returns how many rows were applied."""
        return self._write(lambda conn: self._apply(conn))

    def _apply(self, conn: psycopg.Connection[Any]) -> int:
        """Read changed rows in ``seq`` order and apply them to the in-memory index (idempotent)."""
        since = self.last_seq
        with conn.cursor(binary=True) as cursor:
            cursor.execute(_CHANGES, (since,))
            rows = cursor.fetchall()
        conn.rollback()  # end the read transaction: the next catch-up must see newer commits
        with self._lock:
            # Another thread may have applied some of them meanwhile: commit order is seq order, so what
            # it applied is a prefix, and the rest is what is left here.
            rows = [r for r in rows if r[0] > self.last_seq]
            if rows:
                self._apply_rows(rows)
            return len(rows)

    def _apply_rows(self, rows: list[tuple[Any, ...]]) -> None:
        stale = [self._label[r[1]] for r in rows if r[1] in self._label]
        for label in stale:
            self._meta.pop(label, None)
            self._label.pop(self._ids.pop(label), None)
        if stale and self._index is not None:
            self._index.remove(np.asarray(stale, dtype=np.int64))
        live = [r for r in rows if not r[5]]
        if live:
            vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in live])
            if self._index is None:
                self.dim, self._index = vectors.shape[1], AdaptiveIndex(vectors.shape[1], self.params)
            labels = np.asarray([r[0] for r in live], dtype=np.int64)
            self._index.add(vectors, labels)
            for seq, item_id, _, meta, embedder, _ in live:
                self._ids[seq], self._label[item_id], self._meta[seq] = item_id, seq, meta
                self._embedder = embedder
        self.last_seq = max(self.last_seq, int(rows[-1][0]))
        GALLERY_SIZE.set(len(self._ids))  # writes through other replicas change this one's size too
        if not self._ids:
            self._embedder = None
            if self.fixed_dim is None:
                self.dim, self._index = None, None

    def _listen(self) -> None:
        """Catch up on each notification and every ``catchup_interval_s``; re-connect after a cut."""
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect(autocommit=True)
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._apply(conn)  # what was missed while not listening
                if self._wait_for_notification(conn) and not self._stop.is_set():
                    self._apply(conn)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("gallery listener lost its connection (%s); re-connecting", type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(min(self.catchup_interval_s, 1.0))
        if conn is not None:
            conn.close()

    def _wait_for_notification(self, conn: psycopg.Connection[Any]) -> bool:
        """Wait for a notification or ``catchup_interval_s``, in short slices so ``close`` is quick."""
        deadline = time.monotonic() + self.catchup_interval_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            slice_s = max(0.01, min(_POLL_S, deadline - time.monotonic()))
            for _ in conn.notifies(timeout=slice_s, stop_after=1):
                return True
        return not self._stop.is_set()

    # -- writes ----------------------------------------------------------------------------------------

    def _write(self, action: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``action`` on the writer connection; one retry on a fresh connection if it was cut."""
        with self._write_lock:
            for attempt in (1, 2):
                try:
                    if self._writer.closed:
                        self._writer = self._connect()
                    return action(self._writer)
                except psycopg.OperationalError as exc:
                    self._writer.close()
                    if attempt == 2:
                        raise DatabaseUnavailable("the gallery's database cannot be reached") from exc
            raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, conn: psycopg.Connection[Any], body: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """``body`` under the gallery's write lock, notified on commit, then applied here at once."""
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                result = body(cursor)
                cursor.execute(f"NOTIFY {CHANNEL}")
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        self._apply(conn)  # read-your-writes on this replica
        return result

    @property
    def embedder(self) -> str | None:
        """The ``model:version`` of the stored vectors (as this replica last caught up)."""
        return self._embedder

    def add(
        self,
        vectors: np.ndarray,
        metadata: list[dict[str, Any]],
        ids: list[str] | None = None,
        *,
        embedder: str | None = None,
    ) -> list[str]:
        """Store vectors with their metadata (an existing id is replaced); returns their ids."""
        vectors, new_ids = rows_to_add(vectors, metadata, ids)
        dim = vectors.shape[1]
        if self.fixed_dim is not None and dim != self.fixed_dim:
            raise ValueError(f"{dim}-d vectors for a gallery of {self.fixed_dim}-d vectors")

        def body(cursor: psycopg.Cursor[Any]) -> None:
            cursor.execute("SELECT dim, embedder FROM gallery_item WHERE NOT deleted LIMIT 1")
            row = cursor.fetchone()
            if row is not None and row[0] != dim:
                raise ValueError(f"{dim}-d vectors for a gallery of {row[0]}-d vectors")
            if row is not None and embedder is not None:
                check_embedder(row[1], embedder)
            stamp = embedder if row is None else (row[1] if embedder is None else embedder)
            cursor.executemany(
                _UPSERT,
                [
                    (item_id, vector.astype("<f4").tobytes(), dim, Jsonb(meta), stamp)
                    for item_id, vector, meta in zip(new_ids, vectors, metadata, strict=True)
                ],
            )

        self._write(lambda conn: self._transaction(conn, body))
        return new_ids

    def remove(self, item_id: str) -> bool:
        """Mark one entry removed (every replica drops it); False if it was not there."""

        def body(cursor: psycopg.Cursor[Any]) -> bool:
            cursor.execute(
                f"UPDATE gallery_item SET deleted = true, seq = {_NEXT_SEQ} WHERE id = %s AND NOT deleted",
                (item_id,),
            )
            return cursor.rowcount > 0

        return self._write(lambda conn: self._transaction(conn, body))

    def clear(self) -> None:
        """Remove every entry."""

        def body(cursor: psycopg.Cursor[Any]) -> None:
            cursor.execute(f"UPDATE gallery_item SET deleted = true, seq = {_NEXT_SEQ} WHERE NOT deleted")

        self._write(lambda conn: self._transaction(conn, body))

    def contains(self, item_id: str) -> bool:
        """Whether the database holds a live entry with this id (the truth, not this replica's view)."""

        def query(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute("SELECT 1 FROM gallery_item WHERE id = %s AND NOT deleted", (item_id,)).fetchone()
            conn.rollback()
            return row is not None

        return self._write(query)

    # Reads (search, index_kind, len) come from IndexedEntries: this replica's in-memory index.

    def close(self) -> None:
        """Stop listening and close both connections."""
        self._stop.set()
        self._listener.join(timeout=_POLL_S + 5)
        self._writer.close()
