"""The spool: append and read back, files left by gone processes, torn lines, rejects."""

from __future__ import annotations

from pathlib import Path

from kernel.db.tables import InferenceLogCreate
from services.db.spool import REJECTED_FILE, Spool


def record(i: int = 0) -> InferenceLogCreate:
    return InferenceLogCreate(route="/api/v1/classify", status=200, latency_ms=1.0, item_index=i, request_id="r")


def test_append_and_read_back_in_chunks(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    written = [record(i) for i in range(5)]
    assert spool.append(written) == 5 and spool.append([]) == 0
    assert spool.pending() == [spool.path] and spool.count() == 5
    chunks = list(spool.read(spool.path, chunk=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [r.event_id for c in chunks for r in c] == [r.event_id for r in written]
    assert chunks[0][0] == written[0]  # every field survives the round trip
    spool.remove(spool.path)
    assert spool.pending() == [] and spool.count() == 0


def test_a_live_writers_file_is_not_claimed_by_another(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append([record()])
    assert second.pending() == []
    first.close()  # the process went away: its file is claimable now
    assert second.pending() == [first.path]
    second.remove(first.path)
    assert not first.path.exists() and not first.path.with_suffix(".lock").exists()


def test_a_file_without_a_lock_is_claimed(tmp_path: Path) -> None:
    orphan = tmp_path / "inference-log-1-dead.jsonl"
    orphan.write_text(record().model_dump_json() + "\n")
    spool = Spool(tmp_path)
    assert spool.pending() == [orphan] and spool.count() == 1


def test_torn_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([record(0)])
    with spool.path.open("a") as handle:
        handle.write("\n" + record(1).model_dump_json()[:20])  # a crash mid-write
    assert [r.item_index for c in spool.read(spool.path) for r in c] == [0]


def test_rejected_records_are_kept_apart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.reject(record())
    assert (tmp_path / REJECTED_FILE).read_text().count("\n") == 1
    assert spool.pending() == []
    spool.close()
    spool.close()  # idempotent
