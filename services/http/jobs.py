"""Routes: GET and DELETE /jobs/{job_id}; and the half of POST /batch that turns a batch into a job."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kernel.db.tables import new_id
from kernel.errors import JobsUnavailable, NotFound
from kernel.logging import get_request_id
from services.db.jobs import JobProgress
from services.http.context import current_context
from services.http.deps import JobsDep
from services.http.schemas import JobResponse
from services.jobs.queue import JobQueue, StagedImage

router = APIRouter(tags=["jobs"])
JOBS_PATH = "/api/v1/jobs"


def job_body(progress: JobProgress, *, offset: int) -> JobResponse:
    """A job as ``GET /jobs/{id}`` shows it, with the page of items ``progress`` holds."""
    job = progress.job
    total = job.item_count
    end = offset + len(progress.items)
    items = [
        {
            "index": i.item_index,
            "filename": i.filename,
            "status": i.status,
            "http_status": i.http_status,
            # Results stored before A/B experiments existed lack their (null) experiment and arm.
            "result": None if i.result is None else {"experiment": None, "arm": None} | i.result,
            "error": i.error,
        }
        for i in progress.items
    ]
    body = {
        "id": job.id,
        "location": f"{JOBS_PATH}/{job.id}",
        "task": job.task,
        "status": job.status,
        "request_id": job.request_id,
        "item_count": total,
        "counts": progress.counts,
        "progress": round(progress.done / total, 4) if total else 1.0,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "items": items,
        "next_offset": end if progress.items and end < total else None,
    }
    return JobResponse.model_validate(body)


def _require(jobs: JobQueue | None) -> JobQueue:
    if jobs is None:
        raise JobsUnavailable("this server takes no batch jobs")
    return jobs


async def submit_job(
    jobs: JobQueue | None,
    *,
    task: str,
    params: dict[str, Any],
    version: str | None,
    uploads: list[UploadFile],
) -> JSONResponse:
    """Store the uploads in the job store, create the job and answer 202 with where to follow it."""
    queue = _require(jobs)
    job_id = new_id()  # the images go to the job's own folder, released when the job ends
    staged = []
    for upload in uploads:
        key, sha256 = await run_in_threadpool(partial(queue.store.put_file, upload.file, job_id=job_id))
        staged.append(StagedImage(filename=upload.filename, content_type=upload.content_type, key=key, sha256=sha256))
    caller = current_context()
    submit = partial(
        queue.submit,
        job_id=job_id,
        task=task,
        params=params,
        version=version,
        images=staged,
        request_id=get_request_id(),
        client_id=caller.client_id,
        tier=caller.tier,
    )
    # The worker logs each image; the api logs nothing for this 202 (services/http/recording.py).
    progress = await run_in_threadpool(submit)
    body = job_body(progress, offset=0)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": body.location})


@router.get("/jobs/{job_id}", response_model=JobResponse)
async def get_job(
    jobs: JobsDep,
    job_id: str,
    offset: Annotated[int, Query(ge=0, description="First item of the page")] = 0,
    limit: Annotated[int, Query(ge=0, le=1000, description="Items per page (0: counts only)")] = 100,
) -> JobResponse:
    """A batch job: status, counts, progress, and a page of per-item results or problems."""
    queue = _require(jobs)
    progress = await run_in_threadpool(partial(queue.progress, job_id, offset=offset, limit=limit))
    if progress is None:
        raise NotFound(f"no job {job_id!r}")
    return job_body(progress, offset=offset)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobResponse,
    status_code=202,
    responses={200: {"model": JobResponse, "description": "The job had already ended: left as it was"}},
)
async def cancel_job(jobs: JobsDep, job_id: str, response: Response) -> JobResponse:
    """Cancel a batch job: pending items are skipped (202); a finished job is left as it is (200)."""
    queue = _require(jobs)
    progress, cancelled = await run_in_threadpool(queue.cancel, job_id)
    if progress is None:
        raise NotFound(f"no job {job_id!r}")
    response.status_code = 202 if cancelled else 200
    return job_body(progress, offset=0)
