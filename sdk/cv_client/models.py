"""Typed results: the server's response bodies (services/http/schemas.py), field for field.

The server refuses undeclared fields in what it sends; the SDK ignores fields it does not know, so that a
newer server does not break an older client. tests/unit/sdk/test_models.py checks the field names agree.
A field the server sometimes leaves out is ``None`` here when absent.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from PIL import Image

State = Literal["ok", "degraded", "down"]
Task = Literal["classify", "detect"]
JobStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
ItemStatus = Literal["pending", "succeeded", "failed", "cancelled"]
Stage = Literal["production", "canary", "shadow", "archived"]
FINISHED_JOB_STATUSES = frozenset({"succeeded", "partial", "failed", "cancelled"})


class Result(BaseModel):
    """Base of every result: fields the SDK does not know are ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class ModelRef(Result):
    name: str
    version: str
    precision: str


class ImageInfo(Result):
    width: int
    height: int
    format: str
    sha256: str
    bytes: int


class ClassPrediction(Result):
    class_id: int
    label: str
    label_id: str | None = None
    score: float


class Box(Result):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(Result):
    box: Box
    class_id: int
    label: str
    score: float


class ClassifyResult(Result):
    predictions: list[ClassPrediction]
    request_id: str | None
    model: ModelRef
    experiment: str | None  # the A/B experiment and arm that chose the version; null outside experiments
    arm: str | None
    image: ImageInfo
    cached: bool
    timings_ms: dict[str, float]

    @property
    def top1(self) -> ClassPrediction | None:
        """The most probable label, or None when the server returned none."""
        return self.predictions[0] if self.predictions else None


class DetectResult(Result):
    detections: list[Detection]
    request_id: str | None
    model: ModelRef
    experiment: str | None  # the A/B experiment and arm that chose the version; null outside experiments
    arm: str | None
    image: ImageInfo
    cached: bool
    timings_ms: dict[str, float]

    def draw(self, image: Any, *, width: int = 3) -> Image.Image:
        """A copy of ``image`` (any input :func:`cv_client.images.load` takes) with the boxes and labels drawn."""
        from cv_client.drawing import draw_detections

        return draw_detections(image, self.detections, width=width)


TaskResult = ClassifyResult | DetectResult


class Problem(Result):
    """An RFC 9457 problem: a batch or job item's error (extension members kept)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None


class SearchHit(Result):
    id: str
    score: float
    metadata: dict[str, Any]


class SearchResult(Result):
    request_id: str | None
    model: ModelRef
    image: ImageInfo
    results: list[SearchHit]
    gallery_size: int
    query_expansion: int
    timings_ms: dict[str, float]


class GalleryItem(Result):
    id: str
    model: ModelRef
    metadata: dict[str, Any]


class GallerySize(Result):
    size: int


class BatchItem(Result):
    index: int
    filename: str | None
    status: int
    result: TaskResult | None
    error: Problem | None


class BatchResult(Result):
    request_id: str | None
    task: Task
    count: int
    succeeded: int
    items: list[BatchItem]
    timings_ms: dict[str, float]


class JobItem(Result):
    index: int
    filename: str | None
    status: ItemStatus
    http_status: int | None
    result: TaskResult | None
    error: Problem | None


class JobCounts(Result):
    pending: int
    succeeded: int
    failed: int
    cancelled: int


class Job(Result):
    """A batch job: its progress and one page of its items (all of them after :meth:`Client.wait`)."""

    id: str
    location: str
    task: Task
    status: JobStatus
    request_id: str | None
    item_count: int
    counts: JobCounts
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items: list[JobItem]
    next_offset: int | None

    @property
    def finished(self) -> bool:
        """True once no item is left to run."""
        return self.status in FINISHED_JOB_STATUSES

    @property
    def done(self) -> int:
        """Items answered or cancelled."""
        return self.item_count - self.counts.pending


class ExperimentArm(Result):
    name: str
    version: str
    weight: float


class ExperimentSummary(Result):
    id: str
    model: str
    status: Literal["active", "paused", "stopped"]
    running: bool
    arms: list[ExperimentArm]
    start_at: datetime | None
    end_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ExperimentsResult(Result):
    experiments: list[ExperimentSummary]


class ExperimentResult(ExperimentSummary):
    analysis: dict[str, Any]


class FeedbackResult(Result):
    request_id: str
    item_index: int
    label: str | None
    correct: bool
    answered_label: str | None
    model: str | None
    version: str | None
    experiment: str | None
    arm: str | None


class ModelVersionStatus(Result):
    version: str
    stage: Stage
    state: State
    precisions: dict[str, Literal["loaded", "failed"]]
    errors: dict[str, str]
    metadata: dict[str, Any]


class ModelStatus(Result):
    model: str
    status: State
    default_version: str | None = None
    error: str | None = None
    versions: list[ModelVersionStatus]


class ModelsResult(Result):
    models: list[ModelStatus]


class LogSinkHealth(Result):
    status: State
    backend: str
    buffered: int
    spooled: int


class CacheHealth(Result):
    status: State
    backend: str
    entries: int | None = None


class JobsHealth(Result):
    status: State
    workers: int | None = None
    active_jobs: int | None = None
    error: str | None = None


class HealthData(Result):
    inference_log: LogSinkHealth | None = None
    cache: CacheHealth | None = None
    jobs: JobsHealth | None = None


class HealthResult(Result):
    status: State
    live: bool
    models: dict[str, State]
    data: HealthData | None = None


class DriftTestResult(Result):
    name: str
    feature: str
    statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    drift: bool


class DriftReport(Result):
    model: str
    version: str | None
    window: int
    n: int
    verdict: Literal["drift", "no_drift", "insufficient_data"]
    alpha: float
    tests: list[DriftTestResult]
    checked_at: datetime
