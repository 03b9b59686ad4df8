"""The data-layer functions: bulk idempotent inserts, queries, batch jobs with items."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import BatchJobCreate, BatchJobItemCreate, InferenceLogCreate, JobStatus
from services.db import logs


def record(**kwargs: object) -> InferenceLogCreate:
    fields: dict[str, object] = {"route": "/api/v1/classify", "status": 200, "latency_ms": 12.5, **kwargs}
    return InferenceLogCreate.model_validate(fields)


def test_insert_skips_event_ids_already_stored(engine: Engine) -> None:
    records = [record(request_id="r1", item_index=i) for i in range(3)]
    with Session(engine) as session:
        logs.insert_inference_logs(session=session, records=records)
        logs.insert_inference_logs(session=session, records=[*records, record(request_id="r2")])
        logs.insert_inference_logs(session=session, records=[])
        session.commit()
        assert logs.count_inference_logs(session=session) == 4
        assert logs.count_inference_logs(session=session, request_id="r1") == 3


def test_insert_in_chunks(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "INSERT_CHUNK", 2)
    with Session(engine) as session:
        logs.insert_inference_logs(session=session, records=[record() for _ in range(5)])
        session.commit()
        assert logs.count_inference_logs(session=session) == 5


def test_list_returns_one_request_in_item_order(engine: Engine) -> None:
    at = datetime(2026, 11, 27, tzinfo=UTC)
    with Session(engine) as session:
        logs.insert_inference_logs(
            session=session,
            records=[
                record(request_id="b", item_index=1, top_label="cat", created_at=at),
                record(request_id="a"),
                record(request_id="b", item_index=0, top_label="dog", created_at=at),
            ],
        )
        session.commit()
        rows = logs.list_inference_logs(session=session, request_id="b")
        assert [(r.item_index, r.top_label) for r in rows] == [(0, "dog"), (1, "cat")]
        assert len(logs.list_inference_logs(session=session)) == 3
        assert len(logs.list_inference_logs(session=session, limit=1, offset=2)) == 1


def test_batch_job_with_items_round_trips(engine: Engine) -> None:
    with Session(engine) as session:
        job = logs.create_batch_job(
            session=session,
            job=BatchJobCreate(task="classify", params={"top_k": 3}, request_id="r1"),
            items=[BatchJobItemCreate(item_index=i, filename=f"{i}.jpg", image_sha256="0" * 64) for i in (1, 0)],
        )
        session.commit()
        found = logs.get_batch_job(session=session, job_id=job.id)
        assert found is not None
        assert found.status == JobStatus.QUEUED and found.item_count == 2 and found.params == {"top_k": 3}
        assert [i.item_index for i in found.items] == [0, 1]
        assert all(i.status == "pending" and i.result is None for i in found.items)
        assert logs.get_batch_job(session=session, job_id="missing") is None
