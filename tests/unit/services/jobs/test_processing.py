"""ChunkProcessor with fake models on SQLite: answers once, poison items alone, retries, cancels, worker losses."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from kernel.db.tables import BatchJob, BatchJobItem, InferenceLog
from kernel.errors import InferenceFailed, InvalidParameter, ModelUnavailable
from services.jobs.processing import ChunkProcessor, backoff_s, is_transient, item_event_id
from services.jobs.store import ImageStore
from tests.unit.fakes import sample
from tests.unit.services.jobs.conftest import FakeModels, MakeJob, png


def job_row(engine: Engine, job_id: str) -> BatchJob:
    with Session(engine) as session:
        job = session.get(BatchJob, job_id)
        assert job is not None
        return job


def item_rows(engine: Engine, job_id: str) -> list[BatchJobItem]:
    with Session(engine) as session:
        query = select(BatchJobItem).where(BatchJobItem.job_id == job_id).order_by(col(BatchJobItem.item_index))
        return list(session.exec(query))


def log_rows(engine: Engine, job_id: str) -> list[InferenceLog]:
    with Session(engine) as session:
        query = select(InferenceLog).where(InferenceLog.job_id == job_id).order_by(col(InferenceLog.item_index))
        return list(session.exec(query))


def test_a_chunk_answers_every_item_with_its_result_and_log_row(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), png(2), png(3)], request_id="req-a")
    before = sample("cv_job_items_total", {"task": "classify", "outcome": "succeeded"})
    assert processor.process(job_id, [0, 1, 2]) is None
    assert models.calls == [("classifier", [1, 2, 3])]  # one call: the model service batches the chunk
    job = job_row(engine, job_id)
    assert (job.status, job.succeeded_count, job.failed_count) == ("succeeded", 3, 0)
    assert job.started_at is not None and job.finished_at is not None
    items = item_rows(engine, job_id)
    assert [i.status for i in items] == ["succeeded"] * 3 and [i.http_status for i in items] == [200] * 3
    result = items[1].result
    assert result is not None and result["predictions"][0]["label"] == "label-2"
    assert result["model"] == {"name": "classifier", "version": "v1", "precision": "fp32"}
    assert result["image"]["width"] == 8 and result["request_id"] == "req-a" and result["cached"] is False
    logs = log_rows(engine, job_id)
    assert [r.item_index for r in logs] == [0, 1, 2]
    assert {(r.route, r.model, r.status, r.request_id) for r in logs} == {("/api/v1/batch", "classifier", 200, "req-a")}
    assert logs[0].event_id == item_event_id(job_id, 0) and logs[0].top_label == "label-1"
    assert logs[0].image_format == "PNG" and logs[0].image_sha256 == items[0].image_sha256 and logs[0].version == "v1"
    features = logs[1].features  # what the drift monitor compares: a job's images are traffic too
    assert features is not None and set(features) == {"image", "label", "confidence", "sketch"}
    assert features["image"]["width"] == 8 and features["label"] == "label-2"
    assert sample("cv_job_items_total", {"task": "classify", "outcome": "succeeded"}) == before + 3


def test_running_a_chunk_again_answers_nothing_twice(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), png(2)])
    processor.process(job_id, [0, 1])
    processor.process(job_id, [0, 1])  # a redelivered message: the job is finished, nothing runs
    assert len(models.calls) == 1
    assert len(log_rows(engine, job_id)) == 2 and job_row(engine, job_id).succeeded_count == 2


def test_a_chunk_overlapping_answered_items_runs_only_the_pending_ones(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), png(2), png(3)])
    processor.process(job_id, [0])
    processor.process(job_id, [0, 1, 2])
    assert models.calls == [("classifier", [1]), ("classifier", [2, 3])]
    assert len(log_rows(engine, job_id)) == 3 and job_row(engine, job_id).status == "succeeded"


def test_a_corrupt_image_fails_alone_with_its_problem(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), b"\x89PNG\r\n\x1a\nnot really", png(3)])
    assert processor.process(job_id, [0, 1, 2]) is None
    assert models.calls == [("classifier", [1, 3])]
    items = item_rows(engine, job_id)
    assert [i.http_status for i in items] == [200, 400, 200]
    error = items[1].error
    assert error is not None and error["type"].endswith("invalid-image") and error["status"] == 400
    assert error["instance"] == f"/api/v1/jobs/{job_id}#1" and error["request_id"] == "req-1"
    job = job_row(engine, job_id)
    assert (job.status, job.succeeded_count, job.failed_count) == ("partial", 2, 1)
    logs = log_rows(engine, job_id)
    assert [(r.status, r.error_type) for r in logs] == [(200, None), (400, "invalid-image"), (200, None)]


def test_a_mislabelled_image_is_415_as_inline(processor: ChunkProcessor, make_job: MakeJob, engine: Engine) -> None:
    from kernel.db.tables import BatchJobItem as Item

    job_id = make_job([png(1)])
    with Session(engine) as session:
        session.connection().execute(update(Item).values(content_type="image/jpeg"))
        session.commit()
    processor.process(job_id, [0])
    assert item_rows(engine, job_id)[0].http_status == 415
    assert job_row(engine, job_id).status == "failed"


def test_an_item_the_model_fails_on_is_not_retried(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    models.fail[2] = InferenceFailed("the model failed on this input")
    job_id = make_job([png(1), png(2)])
    assert processor.process(job_id, [0, 1]) is None
    items = item_rows(engine, job_id)
    assert [i.status for i in items] == ["succeeded", "failed"]
    assert items[1].error is not None and items[1].error["type"].endswith("inference-failed")


def test_a_client_error_from_the_model_call_fails_the_group(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    models.raise_error = InvalidParameter("top_k: too big")
    job_id = make_job([png(1), png(2)])
    assert processor.process(job_id, [0, 1]) is None
    assert [i.http_status for i in item_rows(engine, job_id)] == [422, 422]
    assert job_row(engine, job_id).status == "failed"


def test_an_unavailable_model_is_retried_with_backoff_then_fails_the_items(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    models.raise_error = ModelUnavailable("the classifier service is unreachable")
    job_id = make_job([png(1), png(2)])
    assert processor.process(job_id, [0, 1], attempt=0) == 1.0
    assert processor.process(job_id, [0, 1], attempt=1) == 2.0
    items = item_rows(engine, job_id)
    assert [i.status for i in items] == ["pending", "pending"]
    assert [i.attempts for i in items] == [0, 0]  # a clean exit is not a worker loss
    assert job_row(engine, job_id).status == "running"
    assert processor.process(job_id, [0, 1], attempt=2) is None  # max_retries reached
    items = item_rows(engine, job_id)
    assert [i.http_status for i in items] == [503, 503]
    assert items[0].error is not None and items[0].error["type"].endswith("model-unavailable")
    assert job_row(engine, job_id).status == "failed"
    assert len(models.calls) == 3


def test_only_the_items_the_model_could_not_serve_wait_for_the_retry(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    models.fail[2] = ModelUnavailable("overloaded")
    job_id = make_job([png(1), png(2)])
    assert processor.process(job_id, [0, 1]) == 1.0
    assert [i.status for i in item_rows(engine, job_id)] == ["succeeded", "pending"]
    del models.fail[2]
    assert processor.process(job_id, [0, 1], attempt=1) is None
    assert models.calls[-1] == ("classifier", [2])
    assert job_row(engine, job_id).status == "succeeded"


def test_a_cancelled_job_is_skipped(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    from services.db import jobs as jobs_db

    job_id = make_job([png(1), png(2)])
    with Session(engine) as session:
        assert jobs_db.cancel_job(session=session, job_id=job_id) is True
        session.commit()
    assert processor.process(job_id, [0, 1]) is None
    assert models.calls == []
    assert [i.status for i in item_rows(engine, job_id)] == ["cancelled", "cancelled"]
    assert job_row(engine, job_id).status == "cancelled"


def test_an_unknown_job_is_skipped(processor: ChunkProcessor, models: FakeModels) -> None:
    assert processor.process("0" * 32, [0]) is None
    assert models.calls == []


def test_after_a_worker_loss_the_chunk_runs_item_by_item(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), png(2), png(3)])
    with Session(engine) as session:  # a worker started item 1 and died
        session.connection().execute(update(BatchJobItem).where(col(BatchJobItem.item_index) == 1).values(attempts=1))
        session.commit()
    assert processor.process(job_id, [0, 1, 2]) is None
    assert models.calls == [("classifier", [1]), ("classifier", [2]), ("classifier", [3])]
    assert [i.attempts for i in item_rows(engine, job_id)] == [1, 2, 1]
    assert job_row(engine, job_id).status == "succeeded"


def test_an_item_that_keeps_killing_workers_fails_alone_without_running(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(1), png(2)])
    with Session(engine) as session:
        session.connection().execute(
            update(BatchJobItem).where(col(BatchJobItem.item_index) == 0).values(attempts=2)  # max_worker_losses
        )
        session.commit()
    processor.process(job_id, [0, 1])
    assert models.calls == [("classifier", [2])]
    items = item_rows(engine, job_id)
    assert items[0].http_status == 500 and items[0].error is not None
    assert items[0].error["type"].endswith("worker-lost") and items[1].status == "succeeded"
    assert job_row(engine, job_id).status == "partial"
    assert [r.error_type for r in log_rows(engine, job_id)] == ["worker-lost", None]


def test_an_image_missing_from_the_store_fails_alone(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, store: ImageStore
) -> None:
    job_id = make_job([png(1), png(2)])
    store.path(item_rows(engine, job_id)[0].input_uri or "").unlink()
    processor.process(job_id, [0, 1])
    items = item_rows(engine, job_id)
    assert items[0].error is not None and items[0].error["type"].endswith("job-image-missing")
    assert items[1].status == "succeeded"


def test_detect_jobs_run_the_detector(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    job_id = make_job([png(4)], task="detect")
    processor.process(job_id, [0])
    assert models.calls == [("detector", [4])]
    assert log_rows(engine, job_id)[0].model == "detector"


@pytest.mark.parametrize(("attempt", "expected"), [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0)])
def test_backoff_doubles_up_to_its_cap(attempt: int, expected: float) -> None:
    assert backoff_s(attempt, base_s=1.0, max_s=60.0, rand=lambda: 1.0) == expected
    assert backoff_s(attempt, base_s=1.0, max_s=60.0, rand=lambda: 0.0) == expected / 2


def test_only_unavailability_is_transient() -> None:
    assert is_transient(ModelUnavailable())
    assert not is_transient(InferenceFailed()) and not is_transient(InvalidParameter())


def test_event_ids_are_stable_per_item() -> None:
    assert item_event_id("a" * 32, 1) == item_event_id("a" * 32, 1) != item_event_id("a" * 32, 2)
    assert len(item_event_id("a" * 32, 1)) == 32


def test_an_unexpected_error_from_the_model_call_fails_the_items(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, models: FakeModels
) -> None:
    models.raise_error = RuntimeError("a bug")
    job_id = make_job([png(1)])
    assert processor.process(job_id, [0]) is None
    item = item_rows(engine, job_id)[0]
    assert item.http_status == 500 and item.error is not None and item.error["type"].endswith("inference-failed")


def test_the_images_are_released_once_every_item_is_answered(
    processor: ChunkProcessor, make_job: MakeJob, engine: Engine, store: ImageStore
) -> None:
    job_id = make_job([png(1), png(2), png(3)])
    folder = store.path(f"jobs/{job_id}")
    processor.process(job_id, [0, 1])
    assert folder.is_dir() and job_row(engine, job_id).status == "running"  # item 2 still needs its image
    processor.process(job_id, [2])
    assert job_row(engine, job_id).status == "succeeded" and not folder.exists()
    assert processor.process(job_id, [2]) is None  # a late redelivery finds nothing pending: no image is read
