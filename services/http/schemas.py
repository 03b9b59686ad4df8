"""Response bodies of the public routes (they document the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ModelRef(BaseModel):
    name: str
    version: str
    precision: str


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str
    sha256: str
    bytes: int


class ClassPrediction(BaseModel):
    class_id: int
    label: str
    score: float
    label_id: str | None = None


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    box: Box
    class_id: int
    label: str
    score: float


class ClassifyResponse(BaseModel):
    request_id: str | None
    model: ModelRef
    image: ImageInfo
    predictions: list[ClassPrediction]
    cached: bool = False  # answered from the result cache
    timings_ms: dict[str, float]


class DetectResponse(BaseModel):
    request_id: str | None
    model: ModelRef
    image: ImageInfo
    detections: list[Detection]
    cached: bool = False  # answered from the result cache
    timings_ms: dict[str, float]


class SearchHit(BaseModel):
    id: str
    score: float
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    request_id: str | None
    model: ModelRef
    image: ImageInfo
    results: list[SearchHit]
    gallery_size: int
    timings_ms: dict[str, float]


class GalleryItemResponse(BaseModel):
    id: str
    model: ModelRef | None = None
    metadata: dict[str, Any]


class GallerySizeResponse(BaseModel):
    size: int


class BatchItem(BaseModel):
    index: int
    filename: str | None
    status: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    request_id: str | None
    task: str
    count: int
    succeeded: int
    items: list[BatchItem]
    timings_ms: dict[str, float]


class JobItem(BaseModel):
    index: int
    filename: str | None
    status: str  # pending, succeeded, failed, cancelled
    http_status: int | None = None
    result: dict[str, Any] | None = None  # as an inline /batch item's result
    error: dict[str, Any] | None = None  # an RFC 9457 problem


class JobResponse(BaseModel):
    id: str
    location: str  # GET it for progress, DELETE it to cancel
    task: str
    status: str  # queued, running, succeeded, partial, failed, cancelled
    request_id: str | None
    item_count: int
    counts: dict[str, int]  # items by status: pending, succeeded, failed, cancelled
    progress: float  # answered or cancelled items / item_count
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items: list[JobItem]  # one page: ?offset=&limit=
    next_offset: int | None  # where the next page starts; None on the last one
