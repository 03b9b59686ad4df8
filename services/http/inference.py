"""Routes: POST /classify, /detect and /batch.

classify and detect without a pinned version run the version of the client's arm when their model has a
running A/B experiment (services/http/experiments.py); /batch (inline or as a job) is left out of experiments.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from kernel.errors import InvalidParameter, PayloadTooLarge, ServiceError, error_from_dict, problem_from_error
from kernel.logging import get_request_id
from services.experiments.snapshot import Assignment
from services.http.deps import (
    AdmissionDep,
    BackendDep,
    DataPlaneDep,
    JobsDep,
    Limits,
    LimitsDep,
    SettingsDep,
    read_image,
)
from services.http.experiments import experiment_version
from services.http.jobs import submit_job
from services.http.recording import BATCH_ROUTE, attribute_model
from services.http.schemas import (
    BatchItem,
    BatchResponse,
    BatchTask,
    ClassifyResponse,
    DetectResponse,
    ImageInfo,
    JobResponse,
    Problem,
    TaskAnswer,
)
from services.imaging import DecodedImage
from services.models.catalogue import JOB_TASKS, decode_floor, image_params
from services.models.worker import InferenceItem, Outcome

router = APIRouter(tags=["inference"])
ImageFile = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, TIFF or GIF (first frame)")]
Version = Annotated[
    str | None, Form(description="Pin a model version; default: the A/B experiment's arm, else the production stage")
]
TopK = Annotated[int, Form(ge=1, le=1000, description="How many labels to return")]
Confidence = Annotated[float, Form(ge=0.0, le=1.0, description="Minimum score of a detection")]
Iou = Annotated[float, Form(gt=0.0, le=1.0, description="IoU threshold of class-aware NMS")]
MaxDetections = Annotated[int, Form(ge=1, le=1000)]
Classes = Annotated[str | None, Form(description="Comma-separated class ids to keep, e.g. 0,2")]
BatchMode = Annotated[
    Literal["auto", "inline", "job"],
    Form(description="inline: answer now; job: 202 and a job to poll; auto: inline up to CV_MAX_BATCH_ITEMS images"),
]

TASK_ANSWERS: dict[str, type[TaskAnswer]] = {"classify": ClassifyResponse, "detect": DetectResponse}


def parse_classes(raw: str | None) -> list[int] | None:
    """'0, 2,5' -> [0, 2, 5]; refuses anything else with a 422."""
    if raw is None or not raw.strip():
        return None
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise InvalidParameter(f"classes must be comma-separated integers, got {raw!r}") from None
    if any(v < 0 for v in values):
        raise InvalidParameter("class ids are non-negative")
    return values


def image_info(image: DecodedImage) -> ImageInfo:
    return ImageInfo(
        width=image.width, height=image.height, format=image.format, sha256=image.sha256, bytes=image.byte_size
    )


def answer(outcome: Outcome, image: DecodedImage, started: float, decode_ms: float) -> dict[str, Any]:
    """A successful outcome as a response body, or raise its error."""
    if outcome.prediction is None:
        raise error_from_dict(outcome.error or {})
    prediction = outcome.prediction
    timings = {"decode": decode_ms, **prediction.timings_ms, "total": (time.perf_counter() - started) * 1000}
    return {
        **prediction.result,
        "request_id": get_request_id(),
        "model": {"name": prediction.model, "version": prediction.version, "precision": prediction.precision},
        "experiment": None,  # classify and detect say which, when an experiment chose the version (arm_fields)
        "arm": None,
        "image": image_info(image),
        "cached": outcome.cached,
        "timings_ms": timings,
    }


async def run_one(
    backend: BackendDep, model: str, image: DecodedImage, params: dict[str, Any], version: str | None
) -> Outcome:
    item = InferenceItem(
        image=image.pixels,
        params=image_params(model, image, params),
        version=version,
        request_id=get_request_id(),
        image_sha256=image.sha256,
    )
    (outcome,) = await backend.infer(model, [item])
    return outcome


def arm_fields(assignment: Assignment | None) -> dict[str, str | None]:
    """The body's ``experiment`` and ``arm``: null outside experiments."""
    if assignment is None:
        return {"experiment": None, "arm": None}
    return {"experiment": assignment.experiment, "arm": assignment.arm}


def answered(body: TaskAnswer) -> JSONResponse:
    """A checked answer of /classify or /detect as the response, with its version and cache headers.

    The route returns the response itself, so FastAPI does not check and convert the body a second time against
    ``response_model`` (which stays the route's documented schema): ``model_dump(mode="json")`` is what FastAPI's
    own serialisation would give, and json.dumps writes it, as it always did (pydantic's JSON writer spells a
    score of 1e-05 as 0.00001, the same number in other digits).
    """
    headers = {
        "X-Model-Version": f"{body.model.name}:{body.model.version}",
        "X-Cache": "hit" if body.cached else "miss",
    }
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


@router.post("/classify", response_model=ClassifyResponse, response_class=JSONResponse)
async def classify(
    request: Request,
    limits: LimitsDep,
    backend: BackendDep,
    plane: DataPlaneDep,
    image: ImageFile,
    top_k: TopK = 5,
    version: Version = None,
) -> JSONResponse:
    """Classify one image: the top-k labels with their probabilities."""
    started = time.perf_counter()
    decoded = await read_image(image, limits, decode_floor("classifier"))
    decode_ms = (time.perf_counter() - started) * 1000
    version, assignment = await experiment_version(request, plane, "classifier", version)
    outcome = await run_one(backend, "classifier", decoded, {"top_k": top_k}, version)
    return answered(
        ClassifyResponse.model_validate(answer(outcome, decoded, started, decode_ms) | arm_fields(assignment))
    )


@router.post("/detect", response_model=DetectResponse, response_class=JSONResponse)
async def detect(
    request: Request,
    limits: LimitsDep,
    backend: BackendDep,
    plane: DataPlaneDep,
    image: ImageFile,
    confidence: Confidence = 0.25,
    iou: Iou = 0.45,
    max_detections: MaxDetections = 100,
    classes: Classes = None,
    version: Version = None,
) -> JSONResponse:
    """Detect objects: boxes (x1, y1, x2, y2) in original-image pixels with class and score."""
    started = time.perf_counter()
    params = {"confidence": confidence, "iou": iou, "max_detections": max_detections, "classes": parse_classes(classes)}
    decoded = await read_image(image, limits, decode_floor("detector"))
    decode_ms = (time.perf_counter() - started) * 1000
    version, assignment = await experiment_version(request, plane, "detector", version)
    outcome = await run_one(backend, "detector", decoded, params, version)
    return answered(
        DetectResponse.model_validate(answer(outcome, decoded, started, decode_ms) | arm_fields(assignment))
    )


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses={202: {"model": JobResponse, "description": "Accepted as a batch job; poll `Location`"}},
)
async def batch(
    settings: SettingsDep,
    limits: LimitsDep,
    backend: BackendDep,
    jobs: JobsDep,
    admission: AdmissionDep,
    images: Annotated[list[UploadFile], File(description="Several images for one task")],
    task: Annotated[BatchTask, Form()],
    top_k: TopK = 5,
    confidence: Confidence = 0.25,
    iou: Iou = 0.45,
    max_detections: MaxDetections = 100,
    classes: Classes = None,
    version: Version = None,
    mode: BatchMode = "auto",
) -> BatchResponse | JSONResponse:
    """Run one task over several images: inline (each item its result or problem), or as a job (202)."""
    attribute_model(JOB_TASKS[task])
    params: dict[str, Any] = (
        {"top_k": top_k}
        if task == "classify"
        else {"confidence": confidence, "iou": iou, "max_detections": max_detections, "classes": parse_classes(classes)}
    )
    as_job = mode == "job" or (mode == "auto" and len(images) > limits.max_batch_items and jobs is not None)
    if as_job:
        if len(images) > settings.job_max_items:
            raise PayloadTooLarge(f"{len(images)} images; a job takes at most {settings.job_max_items}")
        return await submit_job(jobs, task=task, params=params, version=version, uploads=images)
    if len(images) > limits.max_batch_items:
        raise PayloadTooLarge(
            f"{len(images)} images; at most {limits.max_batch_items} are answered inline (send mode=job)"
        )
    if admission is None:
        return await _inline_batch(limits, backend, images, task, params, version)
    async with admission.slot(BATCH_ROUTE):  # an inline batch is inference now: admitted like /classify
        return await _inline_batch(limits, backend, images, task, params, version)


async def _inline_batch(
    limits: Limits,
    backend: BackendDep,
    images: list[UploadFile],
    task: BatchTask,
    params: dict[str, Any],
    version: str | None,
) -> BatchResponse:
    started = time.perf_counter()
    decoded: list[DecodedImage | ServiceError] = []
    for upload in images:
        try:
            decoded.append(await read_image(upload, limits, decode_floor(JOB_TASKS[task])))
        except ServiceError as exc:
            decoded.append(exc)
    valid = [(i, d) for i, d in enumerate(decoded) if isinstance(d, DecodedImage)]
    items = [
        InferenceItem(
            image=d.pixels,
            params=image_params(JOB_TASKS[task], d, params),
            version=version,
            request_id=get_request_id(),
            image_sha256=d.sha256,
        )
        for _, d in valid
    ]
    outcomes = await backend.infer(JOB_TASKS[task], items) if items else []
    by_index = dict(zip([i for i, _ in valid], outcomes, strict=True))
    answers = TASK_ANSWERS[task]
    results = [
        _batch_item(i, images[i].filename, decoded[i], by_index.get(i), started, answers) for i in range(len(images))
    ]
    return BatchResponse(
        request_id=get_request_id(),
        task=task,
        count=len(results),
        succeeded=sum(1 for r in results if r.status == 200),
        items=results,
        timings_ms={"total": (time.perf_counter() - started) * 1000},
    )


def _batch_item(
    index: int,
    filename: str | None,
    decoded: DecodedImage | ServiceError,
    outcome: Outcome | None,
    started: float,
    answers: type[TaskAnswer],
) -> BatchItem:
    try:
        if isinstance(decoded, ServiceError):
            raise decoded
        assert outcome is not None
        result = answer(outcome, decoded, started, 0.0)
        return BatchItem(index=index, filename=filename, status=200, result=answers.model_validate(result), error=None)
    except ServiceError as exc:
        problem = problem_from_error(exc, instance=f"/api/v1/batch#{index}", request_id=get_request_id())
        return BatchItem(
            index=index, filename=filename, status=exc.status_code, result=None, error=Problem.model_validate(problem)
        )
