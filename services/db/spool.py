"""A local file where inference-log records wait, as JSON lines, while the database is unreachable.

Each writer appends to its own file (``<instance>.jsonl``) and holds an exclusive ``flock`` on
``<instance>.lock`` for its lifetime. A file whose lock is free belongs to a process that has
gone (a crash, a restart): any writer may claim and replay it. Replays are idempotent because
every record carries a unique ``event_id`` (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from kernel.db.tables import InferenceLogCreate

log = logging.getLogger(__name__)

SPOOL_SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"
REJECTED_FILE = "rejected.jsonl"


class Spool:
    """Append, list, read and remove spooled records under one directory."""

    def __init__(self, directory: Path, *, name: str = "inference-log") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.instance = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = directory / f"{self.instance}{SPOOL_SUFFIX}"
        self._lock: IO[str] | None = (directory / f"{self.instance}{LOCK_SUFFIX}").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def append(self, records: Iterable[InferenceLogCreate]) -> int:
        """Add records to this writer's file and sync it to disk; returns how many."""
        lines = [record.model_dump_json() + "\n" for record in records]
        if lines:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
        return len(lines)

    def pending(self) -> list[Path]:
        """Files to replay: this writer's own, then those left by processes that have gone."""
        files = [self.path] if self.path.exists() else []
        for path in sorted(self.directory.glob(f"*{SPOOL_SUFFIX}")):
            if path != self.path and path.name != REJECTED_FILE and _owner_gone(path.with_suffix(LOCK_SUFFIX)):
                files.append(path)
        return files

    def count(self) -> int:
        """Records waiting in every pending file."""
        total = 0
        for path in self.pending():
            with path.open("rb") as handle:
                total += sum(1 for _ in handle)
        return total

    def read(self, path: Path, chunk: int = 500) -> Iterator[list[InferenceLogCreate]]:
        """The records of one file in chunks; a torn last line (a crash mid-write) is skipped."""
        batch: list[InferenceLogCreate] = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    batch.append(InferenceLogCreate.model_validate_json(line))
                except ValidationError:
                    log.warning("unreadable spool line skipped", extra={"file": path.name, "line": number})
                    continue
                if len(batch) >= chunk:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def remove(self, path: Path) -> None:
        """Delete a replayed file (and the lock file a gone process left)."""
        path.unlink(missing_ok=True)
        if path != self.path:
            path.with_suffix(LOCK_SUFFIX).unlink(missing_ok=True)

    def reject(self, record: InferenceLogCreate) -> None:
        """Keep a record the database refuses for a reason retrying cannot fix, for a person to read."""
        with (self.directory / REJECTED_FILE).open("a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")

    def close(self) -> None:
        """Release this writer's lock; a file still pending becomes claimable by the next writer."""
        if self._lock is not None:
            self._lock.close()
            (self.directory / f"{self.instance}{LOCK_SUFFIX}").unlink(missing_ok=True)
            self._lock = None


def _owner_gone(lock_path: Path) -> bool:
    """True when no live process holds the lock (or there is no lock file at all)."""
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True
