"""GET /jobs/{id}'s body from stored rows: results stored before A/B experiments still read."""

from __future__ import annotations

from kernel.db.tables import BatchJob, BatchJobItem
from services.db.jobs import JobProgress
from services.http.jobs import job_body


def test_a_result_stored_without_experiment_and_arm_reads_with_them_null() -> None:
    result = {
        "predictions": [{"class_id": 0, "label": "tabby", "score": 0.5}],
        "request_id": "r1",
        "model": {"name": "classifier", "version": "v2", "precision": "fp32"},
        "image": {"width": 8, "height": 8, "format": "PNG", "sha256": "ab" * 32, "bytes": 10},
        "cached": False,
        "timings_ms": {"total": 1.0},
    }
    job = BatchJob(id="j1", task="classify", status="succeeded", item_count=1, succeeded_count=1)
    item = BatchJobItem(job_id="j1", item_index=0, status="succeeded", http_status=200, result=result)
    counts = {"pending": 0, "succeeded": 1, "failed": 0, "cancelled": 0}
    body = job_body(JobProgress(job=job, counts=counts, items=[item]), offset=0)
    answer = body.items[0].result
    assert answer is not None and (answer.experiment, answer.arm) == (None, None)
    assert answer.model.version == "v2"
