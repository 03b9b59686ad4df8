"""InferenceLogWriter: bulk flushes, spooling while the sink is down, replay when it is back, rejects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import InferenceLogCreate
from services.db.logs import count_inference_logs
from services.db.spool import Spool
from services.db.writer import DatabaseSink, InferenceLogWriter, RowsRejected
from tests.unit.fakes import sample
from tests.waiting import wait_for


class FlakySink:
    """Keeps what it is given; ``down`` makes it fail like an unreachable database."""

    name = "fake"

    def __init__(self) -> None:
        self.rows: dict[str, InferenceLogCreate] = {}
        self.writes: list[int] = []
        self.down = False

    def write(self, records: Sequence[InferenceLogCreate]) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        if any(r.top_label == "poison" for r in records):
            raise RowsRejected("value too long")
        self.writes.append(len(records))
        self.rows.update((r.event_id, r) for r in records)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(i: int = 0, **kwargs: object) -> InferenceLogCreate:
    return InferenceLogCreate.model_validate(
        {"route": "/api/v1/classify", "status": 200, "latency_ms": 1.0, "item_index": i, **kwargs}
    )


def make(tmp_path: Path, **kwargs: float) -> tuple[InferenceLogWriter, FlakySink, Clock]:
    sink, clock = FlakySink(), Clock()
    writer = InferenceLogWriter(sink, Spool(tmp_path), retry_interval_s=5, clock=clock, **kwargs)  # type: ignore[arg-type]
    return writer, sink, clock


def counter(outcome: str) -> float:
    return sample("cv_inference_log_records_total", {"outcome": outcome})


def test_records_are_written_in_one_bulk_flush(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path)
    before = counter("written")
    writer.submit([record(i) for i in range(10)])
    assert sink.rows == {}  # nothing touches the sink on submit
    writer.flush()
    assert sink.writes == [10] and writer.status == "ok"
    assert counter("written") == before + 10
    writer.flush()  # nothing buffered: nothing written
    assert sink.writes == [10]


def test_sink_down_spools_then_replays_everything_once(tmp_path: Path) -> None:
    writer, sink, clock = make(tmp_path)
    spooled, replayed = counter("spooled"), counter("replayed")
    sink.down = True
    writer.submit([record(i) for i in range(3)])
    writer.flush()
    assert writer.status == "degraded" and writer.describe()["spooled"] == 3
    assert sample("cv_inference_log_sink_up", {}) == 0
    writer.submit([record(3)])
    writer.flush()  # retry not due yet: straight to the spool, no attempt on the sink
    assert writer.describe() == {"status": "degraded", "backend": "fake", "buffered": 0, "spooled": 4}
    sink.down = False
    writer.flush()
    assert sink.rows == {}  # still waiting for the retry interval
    clock.now += 5
    writer.submit([record(4)])
    writer.flush()
    assert len(sink.rows) == 5 and writer.status == "ok"
    assert sorted(r.item_index for r in sink.rows.values()) == [0, 1, 2, 3, 4]
    assert counter("spooled") == spooled + 4 and counter("replayed") == replayed + 4
    assert writer.spool.pending() == [] and sample("cv_inference_log_sink_up", {}) == 1


def test_still_down_at_the_retry_keeps_spooling(tmp_path: Path) -> None:
    writer, sink, clock = make(tmp_path)
    sink.down = True
    writer.submit([record(0)])
    writer.flush()
    clock.now += 5
    writer.submit([record(1)])
    writer.flush()
    assert writer.describe()["spooled"] == 2 and sink.rows == {}


def test_spool_left_by_a_gone_process_is_replayed_on_start(tmp_path: Path) -> None:
    old = Spool(tmp_path)
    old.append([record(i) for i in range(2)])
    old.close()
    writer, sink, _ = make(tmp_path)
    assert writer.status == "degraded" and writer.describe()["spooled"] == 2
    writer.flush()
    assert len(sink.rows) == 2 and writer.status == "ok"


def test_rejected_rows_go_apart_and_the_rest_is_written(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path)
    rejected = counter("rejected")
    writer.submit([record(0), record(1, top_label="poison"), record(2)])
    writer.flush()  # the bulk insert is refused: spooled, to be separated row by row
    writer.flush()
    assert sorted(r.item_index for r in sink.rows.values()) == [0, 2]
    assert counter("rejected") == rejected + 1
    assert (tmp_path / "rejected.jsonl").read_text().count("poison") == 1
    assert writer.status == "ok"


def test_the_thread_flushes_by_size_and_by_interval(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path, buffer_size=3, flush_interval_s=0.2)
    writer.start()
    try:
        writer.submit([record(i) for i in range(3)])  # a full buffer wakes the thread
        wait_for(lambda: len(sink.rows) == 3, 10, "3 rows", interval_s=0.02)
        writer.submit([record(3)])  # one record waits for the interval
        wait_for(lambda: len(sink.rows) == 4, 10, "4 rows", interval_s=0.02)
    finally:
        writer.close()


def test_close_flushes_what_is_left_to_the_spool_when_down(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path, flush_interval_s=60)
    writer.start()
    sink.down = True
    writer.submit([record(0)])
    writer.close()
    assert sink.rows == {}
    assert [r.item_index for c in Spool(tmp_path).read(writer.spool.path) for r in c] == [0]


def test_database_sink_writes_and_ignores_replayed_event_ids(engine: Engine) -> None:
    sink = DatabaseSink(engine)
    records = [record(i) for i in range(3)]
    assert sink.name == "sqlite"
    sink.write(records)
    sink.write(records)
    with Session(engine) as session:
        assert count_inference_logs(session=session) == 3


def test_database_sink_reports_bad_rows_as_rejected(engine: Engine) -> None:
    bad = InferenceLogCreate.model_construct(**{**record().model_dump(), "route": None})
    with pytest.raises(RowsRejected):
        DatabaseSink(engine).write([bad])
