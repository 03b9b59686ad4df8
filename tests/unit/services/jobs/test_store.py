"""ImageStore: a folder per job, one file per content within it, atomic writes, released when the job ends."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from services.jobs.store import ImageStore

JOB = "0123456789abcdef0123456789abcdef"


def test_put_stores_once_per_job_under_the_sha256(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "jobs")
    key, sha = store.put(b"abc", job_id=JOB)
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert key == f"jobs/{JOB}/{sha}" and store.read(key) == b"abc"
    assert store.put_file(io.BytesIO(b"abc"), job_id=JOB, chunk_bytes=1) == (key, sha)
    files = [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]
    assert files == [store.path(key)]  # no second copy, no temporary file left


def test_release_deletes_only_that_jobs_images(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    other = "f" * 32
    mine, _ = store.put(b"abc", job_id=JOB)
    theirs, _ = store.put(b"abc", job_id=other)  # the same bytes in another job: a file of its own
    assert store.release(JOB) is True
    with pytest.raises(FileNotFoundError):
        store.read(mine)
    assert store.read(theirs) == b"abc"
    assert store.release(JOB) is False  # released already
    assert store.release("../../etc") is False  # not a job id: nothing outside the store is touched


def test_a_job_id_must_be_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        ImageStore(tmp_path).put(b"abc", job_id="../escape")


def test_a_missing_key_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageStore(tmp_path).read(ImageStore.key_for("0" * 64, JOB))


def test_keys_of_the_old_layout_are_still_read(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    old = tmp_path / "sha256" / "ba" / ("ba" + "0" * 62)
    old.parent.mkdir(parents=True)
    old.write_bytes(b"before")
    assert store.read(f"sha256/ba/{old.name}") == b"before"


def test_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        ImageStore(tmp_path / "jobs").path("../secret")


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("disk gone")

    store = ImageStore(tmp_path / "jobs")
    with pytest.raises(OSError, match="disk gone"):
        store.put_file(Broken(), job_id=JOB)
    assert not [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]


def test_the_housekeeping_listings_of_a_store_that_holds_nothing_yet(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "never-written")
    assert store.job_folders() == {} and store.incoming_before(float("inf")) == []
    store.put(b"x", job_id=JOB)
    (store.root / "jobs" / "not-a-job-id").mkdir()  # only folders named like job ids are jobs
    assert list(store.job_folders()) == [JOB]
