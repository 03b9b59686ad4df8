"""Where job images wait for the workers: a folder both the api and the workers mount, one folder per job.

A job's images live under ``jobs/<job id>/<sha256>`` (content-addressed within the job: an image sent
twice is stored once) until the job ends; then :meth:`ImageStore.release` deletes the folder: the
results are in the database and nothing reads the images again. A folder per job, rather than one
file per content shared by every job, is what makes that deletion safe: no other job can be relying
on the file (ADR 0005). The broker message names items, never bytes. Writes go to a temporary file
renamed into place, so a reader never sees half an image.

Keys from before this layout (``sha256/<2 hex>/<sha256>``) are still read; they are never released.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

_JOB_ID = re.compile(r"[0-9a-f]{32}")  # kernel/db/tables.py: new_id()


class ImageStore:
    """Content-addressed image files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key_for(sha256: str, job_id: str) -> str:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return f"jobs/{job_id}/{sha256}"

    def release(self, job_id: str) -> bool:
        """Delete a finished job's images; False when there were none (released already, or never stored)."""
        folder = self.path(f"jobs/{job_id}") if _JOB_ID.fullmatch(job_id) else None
        if folder is None or not folder.is_dir():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def job_folders(self) -> dict[str, float]:
        """Every job folder in the store: job id -> the folder's modification time (seconds since the epoch)."""
        jobs = self.root / "jobs"
        if not jobs.is_dir():
            return {}
        folders = {}
        for entry in jobs.iterdir():
            if _JOB_ID.fullmatch(entry.name) and entry.is_dir():
                try:
                    folders[entry.name] = entry.stat().st_mtime
                except FileNotFoundError:  # released meanwhile
                    continue
        return folders

    def incoming_before(self, cutoff: float) -> list[Path]:
        """Temporary files of writes cut off mid-way (a process killed while storing) older than ``cutoff``."""
        if not self.root.is_dir():
            return []
        stale = []
        for path in self.root.glob(".incoming-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    stale.append(path)
            except FileNotFoundError:  # renamed into place meanwhile
                continue
        return stale

    def path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that would leave the store."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} is outside the job store")
        return path

    def put(self, data: bytes, *, job_id: str) -> tuple[str, str]:
        """Store ``data`` for job ``job_id``; returns its key and SHA-256."""
        return self.put_file(io.BytesIO(data), job_id=job_id)

    def put_file(self, source: BinaryIO, *, job_id: str, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
        """Store what ``source`` holds from its current position for job ``job_id``; returns its key and SHA-256."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := source.read(chunk_bytes):
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())  # accepted work survives a crash of the machine, not only of the process
            sha256 = digest.hexdigest()
            key = self.key_for(sha256, job_id)
            path = self.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)  # atomic; the same bytes stored twice at once end as one file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, sha256

    def read(self, key: str) -> bytes:
        """The bytes of ``key``.

        Raises:
            FileNotFoundError: Nothing is stored under ``key``.
        """
        return self.path(key).read_bytes()
