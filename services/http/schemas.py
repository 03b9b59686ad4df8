"""Response bodies of the public routes: the routes build them, FastAPI validates them, the OpenAPI spec shows them.

Every body derives from :class:`ResponseBody`, which refuses undeclared fields: the spec says
``additionalProperties: false``, and a field sent without being declared here fails the response
(and tests/integration/http/test_openapi_contract.py). A field that is sometimes left out of a body, rather than
sent as null, is typed ``X | MISSING = MISSING``: optional in the spec, absent on the wire. Every other
field is required, so the spec's ``required`` lists what every body carries. Fields are declared in the
order they go out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import MISSING, BaseModel, ConfigDict, Field

from kernel.db.tables import ExperimentStatus, ItemStatus, JobStatus
from services.config import Stage

State = Literal["ok", "degraded", "down"]
BatchTask = Literal["classify", "detect"]


class ResponseBody(BaseModel):
    """Base of every response body: a field not declared is an error, not a silent extra."""

    model_config = ConfigDict(extra="forbid")


class ModelRef(ResponseBody):
    name: str
    version: str
    precision: str


class ImageInfo(ResponseBody):
    width: int
    height: int
    format: str
    sha256: str
    bytes: int


class ClassPrediction(ResponseBody):
    class_id: int
    label: str
    label_id: str | MISSING = MISSING  # e.g. the WordNet id, where the model's labels have one
    score: float


class Box(ResponseBody):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(ResponseBody):
    box: Box
    class_id: int
    label: str
    score: float


class ClassifyResponse(ResponseBody):
    predictions: list[ClassPrediction]
    request_id: str | None
    model: ModelRef
    # The A/B experiment and arm that chose the version (services/experiments); null outside experiments and
    # in batches and jobs, which experiments leave alone.
    experiment: str | None
    arm: str | None
    image: ImageInfo
    cached: bool  # answered from the result cache
    timings_ms: dict[str, float]


class DetectResponse(ResponseBody):
    detections: list[Detection]
    request_id: str | None
    model: ModelRef
    # The A/B experiment and arm that chose the version (services/experiments); null outside experiments and
    # in batches and jobs, which experiments leave alone.
    experiment: str | None
    arm: str | None
    image: ImageInfo
    cached: bool  # answered from the result cache
    timings_ms: dict[str, float]


TaskAnswer = ClassifyResponse | DetectResponse  # one image's answer in a batch or a job


class Problem(ResponseBody):
    """An RFC 9457 problem, as a batch or job item's error; extension members are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None


class SearchHit(ResponseBody):
    id: str
    score: float = Field(description="Cosine similarity with the query searched (the expanded query, with expansion)")
    metadata: dict[str, Any]


class SearchResponse(ResponseBody):
    request_id: str | None
    model: ModelRef
    image: ImageInfo
    results: list[SearchHit]
    gallery_size: int
    query_expansion: int = Field(description="Gallery neighbours added to the query before the search (0: none)")
    timings_ms: dict[str, float]


class GalleryItemResponse(ResponseBody):
    id: str
    model: ModelRef
    metadata: dict[str, Any]


class GallerySizeResponse(ResponseBody):
    size: int


class BatchItem(ResponseBody):
    index: int
    filename: str | None
    status: int  # the HTTP status this image alone would have had
    result: TaskAnswer | None
    error: Problem | None


class BatchResponse(ResponseBody):
    request_id: str | None
    task: BatchTask
    count: int
    succeeded: int
    items: list[BatchItem]
    timings_ms: dict[str, float]


class JobItem(ResponseBody):
    index: int
    filename: str | None
    status: ItemStatus
    http_status: int | None
    result: TaskAnswer | None  # as an inline /batch item's result
    error: Problem | None


class JobCounts(ResponseBody):
    """Items by status."""

    pending: int
    succeeded: int
    failed: int
    cancelled: int


class JobResponse(ResponseBody):
    id: str
    location: str  # GET it for progress, DELETE it to cancel
    task: BatchTask
    status: JobStatus  # partial: some items failed
    request_id: str | None
    item_count: int
    counts: JobCounts
    progress: float  # answered or cancelled items / item_count
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items: list[JobItem]  # one page: ?offset=&limit=
    next_offset: int | None  # where the next page starts; None on the last one


class ExperimentArm(ResponseBody):
    name: str
    version: str
    weight: float


class ExperimentSummary(ResponseBody):
    id: str
    model: str
    status: ExperimentStatus
    running: bool  # active and within its window now: assigning clients
    arms: list[ExperimentArm]  # the first is the control
    start_at: datetime | None
    end_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ExperimentsResponse(ResponseBody):
    experiments: list[ExperimentSummary]  # newest first


class ExperimentResponse(ExperimentSummary):
    analysis: dict[str, Any]  # per-arm counts and metrics, the tests and their decisions (services/experiments)


class FeedbackResponse(ResponseBody):
    request_id: str
    item_index: int
    label: str | None  # the correct label, when the client sent one
    correct: bool
    answered_label: str | None  # the logged answer's top label
    model: str | None
    version: str | None
    experiment: str | None
    arm: str | None


class ModelVersionStatus(ResponseBody):
    version: str
    stage: Stage
    state: State
    precisions: dict[str, Literal["loaded", "failed"]]
    errors: dict[str, str]  # precision -> why it did not load or run
    metadata: dict[str, Any]  # the version's spec in the model store, less its labels, plus num_labels


class ModelStatus(ResponseBody):
    model: str
    status: State
    default_version: str | MISSING | None = MISSING  # left out when the model service could not be asked
    error: str | MISSING = MISSING  # why the model service could not be asked
    versions: list[ModelVersionStatus]


class ModelsResponse(ResponseBody):
    models: list[ModelStatus]


class LogSinkHealth(ResponseBody):
    status: State
    backend: str
    buffered: int
    spooled: int


class CacheHealth(ResponseBody):
    status: State
    backend: str  # memory, redis or off
    entries: int | MISSING = MISSING  # the in-process cache's size


class JobsHealth(ResponseBody):
    status: State
    workers: int | MISSING = MISSING  # live job workers
    active_jobs: int | MISSING = MISSING
    error: str | MISSING = MISSING  # instead of the two counts when the job database is unreachable


class HealthData(ResponseBody):
    """The parts this server has: the inference-log sink and the result cache, the job queue."""

    inference_log: LogSinkHealth | MISSING = MISSING
    cache: CacheHealth | MISSING = MISSING
    jobs: JobsHealth | MISSING = MISSING


class HealthResponse(ResponseBody):
    status: State
    live: bool
    models: dict[str, State]
    data: HealthData | MISSING = MISSING  # left out when the server has neither a data plane nor jobs


class DriftTestResult(ResponseBody):
    """One statistical test of a drift check."""

    name: str  # ks, psi, chi2, mmd
    feature: str  # an image statistic, confidence, labels or sketch
    statistic: float | None  # null when not finite
    p_value: float | None  # null for PSI, which has none
    adjusted_p_value: float | None  # after the multiple-testing correction
    drift: bool


class DriftResponse(ResponseBody):
    """The latest ``window`` answered requests of a model against its version's reference profile."""

    model: str
    version: str | None  # the version most of the window ran (or the pinned one); null when nothing was logged
    window: int
    n: int  # requests compared
    verdict: Literal["drift", "no_drift", "insufficient_data"]
    alpha: float
    tests: list[DriftTestResult]
    checked_at: datetime
