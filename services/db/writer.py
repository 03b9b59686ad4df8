"""The inference-log writer: an in-process buffer flushed in bulk by a background thread.

Requests only append to a deque (:meth:`InferenceLogWriter.submit`). A thread flushes it when
``buffer_size`` records are waiting or every ``flush_interval_s``. When the database cannot take
a flush, the records go to the :class:`~services.db.spool.Spool` and the writer reports
``degraded``; every ``retry_interval_s`` it tries the database again, replays the spool first
(idempotently, by ``event_id``), and is ``ok`` again once the spool is empty. Nothing is dropped:
a record the database refuses for good (bad data) lands in the spool's ``rejected.jsonl``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from kernel.db.tables import InferenceLogCreate
from services.db.logs import insert_inference_logs
from services.db.spool import Spool
from services.metrics import INFERENCE_LOG_RECORDS, INFERENCE_LOG_SINK_UP, INFERENCE_LOG_SPOOLED

log = logging.getLogger(__name__)


class RowsRejected(Exception):
    """The database refused the rows themselves (not the connection): retrying them as they are won't help."""


class LogSink(Protocol):
    """Where flushed records go."""

    name: str

    def write(self, records: Sequence[InferenceLogCreate]) -> None:
        """Store records, skipping known event ids.

        Raises:
            RowsRejected: The rows themselves are bad. Any other exception means the sink is down.
        """
        ...


class DatabaseSink:
    """Bulk inserts into ``inference_log`` (``ON CONFLICT (event_id) DO NOTHING``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.dialect.name

    def write(self, records: Sequence[InferenceLogCreate]) -> None:
        try:
            with Session(self.engine) as session:
                insert_inference_logs(session=session, records=records)
                session.commit()
        except (DataError, IntegrityError) as exc:
            raise RowsRejected(str(exc.orig)) from exc


class InferenceLogWriter:
    """Buffer, flush in bulk, spool when the sink is down, replay when it is back."""

    def __init__(
        self,
        sink: LogSink,
        spool: Spool,
        *,
        buffer_size: int = 256,
        flush_interval_s: float = 1.0,
        retry_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.buffer_size = buffer_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self._clock = clock
        self._buffer: deque[InferenceLogCreate] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down = False
        self._retry_at = 0.0
        self._spooled = spool.count()  # left by an earlier process: replayed on the first flush
        INFERENCE_LOG_SPOOLED.set(self._spooled)
        INFERENCE_LOG_SINK_UP.set(1)

    # The request side: O(1), never touches the database or the disk.
    def submit(self, records: Iterable[InferenceLogCreate]) -> None:
        """Queue records for the next flush."""
        self._buffer.extend(records)
        if len(self._buffer) >= self.buffer_size:
            self._wake.set()

    @property
    def status(self) -> str:
        """``ok`` while records reach the database; ``degraded`` while any wait in the spool."""
        return "degraded" if self._down or self._spooled else "ok"

    def describe(self) -> dict[str, Any]:
        """What health shows about the log sink."""
        return {
            "status": self.status,
            "backend": self.sink.name,
            "buffered": len(self._buffer),
            "spooled": self._spooled,
        }

    def start(self) -> None:
        """Start the flushing thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and flush what is left (to the spool if the database is away)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()
        self.spool.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # pragma: no cover - the thread must outlive any bug in one flush
                log.exception("inference-log flush failed")

    def flush(self) -> None:
        """Write what is buffered; replay the spool first when the database may be back."""
        with self._flush_lock:
            batch = [self._buffer.popleft() for _ in range(len(self._buffer))]
            if (self._down or self._spooled) and self._clock() >= self._retry_at:
                self._replay()
            if not batch:
                return
            if self._down:
                self._to_spool(batch)
                return
            try:
                self.sink.write(batch)
            except RowsRejected:
                self._to_spool(batch)  # the replay separates the bad rows from the good ones
                self._retry_at = self._clock()
            except Exception as exc:
                self._went_down(exc)
                self._to_spool(batch)
            else:
                INFERENCE_LOG_RECORDS.labels("written").inc(len(batch))

    def _replay(self) -> None:
        """Send every pending spool file to the sink, oldest writer's first; stop at the first outage."""
        try:
            for path in self.spool.pending():
                replayed = 0
                for chunk in self.spool.read(path):
                    replayed += self._write_or_reject(chunk)
                self.spool.remove(path)
                INFERENCE_LOG_RECORDS.labels("replayed").inc(replayed)
                log.info("inference-log spool replayed", extra={"file": path.name, "records": replayed})
        except Exception as exc:
            self._went_down(exc)
            return
        self._spooled = 0
        INFERENCE_LOG_SPOOLED.set(0)
        if self._down:
            self._down = False
            INFERENCE_LOG_SINK_UP.set(1)
            log.warning("inference-log database is back; spool replayed", extra={"sink": self.sink.name})

    def _write_or_reject(self, chunk: list[InferenceLogCreate]) -> int:
        try:
            self.sink.write(chunk)
            return len(chunk)
        except RowsRejected:
            written = 0
            for record in chunk:
                try:
                    self.sink.write([record])
                    written += 1
                except RowsRejected as exc:
                    log.error("inference-log record rejected", extra={"event_id": record.event_id, "error": str(exc)})
                    self.spool.reject(record)
                    INFERENCE_LOG_RECORDS.labels("rejected").inc()
            return written

    def _to_spool(self, batch: list[InferenceLogCreate]) -> None:
        self._spooled += self.spool.append(batch)
        INFERENCE_LOG_SPOOLED.set(self._spooled)
        INFERENCE_LOG_RECORDS.labels("spooled").inc(len(batch))

    def _went_down(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self.retry_interval_s
        if not self._down:
            self._down = True
            INFERENCE_LOG_SINK_UP.set(0)
            log.warning(
                "inference-log database unreachable; spooling to disk",
                extra={"sink": self.sink.name, "spool": str(self.spool.path), "error": repr(exc)},
            )
