"""ImageStore: content addressing, one file per content, atomic writes, keys that stay inside the store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from services.jobs.store import ImageStore


def test_put_stores_once_under_the_sha256(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "jobs")
    key, sha = store.put(b"abc")
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert key == f"sha256/ba/{sha}" and store.read(key) == b"abc"
    assert store.put_file(io.BytesIO(b"abc"), chunk_bytes=1) == (key, sha)
    files = [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]
    assert files == [store.path(key)]  # no second copy, no temporary file left


def test_a_missing_key_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageStore(tmp_path).read(ImageStore.key_for("0" * 64))


def test_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        ImageStore(tmp_path / "jobs").path("../secret")


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("disk gone")

    store = ImageStore(tmp_path / "jobs")
    with pytest.raises(OSError, match="disk gone"):
        store.put_file(Broken())
    assert not [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]
