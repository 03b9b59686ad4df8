"""Where job images wait for the workers: a folder both the api and the workers mount, content-addressed.

An image is stored once under ``sha256/<first two hex>/<sha256>`` however many jobs send it; the
broker message names items, never bytes. Writes go to a temporary file renamed into place, so a
reader never sees half an image, and two api replicas storing the same image at once are harmless.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class ImageStore:
    """Content-addressed image files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key_for(sha256: str) -> str:
        return f"sha256/{sha256[:2]}/{sha256}"

    def path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that would leave the store."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} is outside the job store")
        return path

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; returns its key and SHA-256."""
        return self.put_file(io.BytesIO(data))

    def put_file(self, source: BinaryIO, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
        """Store what ``source`` holds from its current position, copied in chunks; returns its key and SHA-256."""
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
            key = self.key_for(sha256)
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
