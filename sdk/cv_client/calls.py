"""Each API call as data (method, path, form, files, how to read the answer), shared by both clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from cv_client.images import ImageInput, to_upload
from cv_client.models import (
    BatchResult,
    ClassifyResult,
    DetectResult,
    DriftReport,
    ExperimentResult,
    ExperimentsResult,
    FeedbackResult,
    GalleryItem,
    GallerySize,
    HealthResult,
    Job,
    ModelsResult,
    SearchResult,
    Task,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Files = list[tuple[str, tuple[str, bytes, str]]]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the parser of its successful answer.

    ``ok`` lists statuses read as a result rather than raised: health answers 503 with its body when the
    server is down.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    data: dict[str, str] = field(default_factory=dict)
    files: Files = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    ok: frozenset[int] = frozenset()
    json: dict[str, Any] | None = None  # a JSON body (feedback), instead of a form


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _nothing(response: httpx.Response) -> None:
    return None


def _form(**values: object) -> dict[str, str]:
    """Form fields, leaving out the ones that are None (the server's defaults apply)."""
    return {key: str(value) for key, value in values.items() if value is not None}


def _classes(classes: Sequence[int] | None) -> str | None:
    return None if classes is None else ",".join(str(int(c)) for c in classes)


def _image(image: ImageInput) -> Files:
    return [("image", to_upload(image).part())]


def classify(image: ImageInput, *, top_k: int, version: str | None) -> Call[ClassifyResult]:
    return Call("POST", "/classify", _model(ClassifyResult), _form(top_k=top_k, version=version), _image(image))


def detect(
    image: ImageInput,
    *,
    confidence: float | None,
    iou: float | None,
    max_detections: int | None,
    classes: Sequence[int] | None,
    version: str | None,
) -> Call[DetectResult]:
    form = _form(
        confidence=confidence, iou=iou, max_detections=max_detections, classes=_classes(classes), version=version
    )
    return Call("POST", "/detect", _model(DetectResult), form, _image(image))


def search(image: ImageInput, *, top_k: int, expand: int | None = None) -> Call[SearchResult]:
    return Call("POST", "/search", _model(SearchResult), _form(top_k=top_k, expand=expand), _image(image))


def gallery_add(image: ImageInput, *, metadata: dict[str, Any] | None) -> Call[GalleryItem]:
    form = _form(metadata=None if metadata is None else json.dumps(metadata))
    return Call("POST", "/gallery", _model(GalleryItem), form, _image(image))


def gallery_size() -> Call[GallerySize]:
    return Call("GET", "/gallery", _model(GallerySize))


def gallery_remove(item_id: str) -> Call[None]:
    return Call("DELETE", f"/gallery/{item_id}", _nothing)


def _batch_form(
    task: Task,
    mode: str,
    *,
    top_k: int | None,
    confidence: float | None,
    iou: float | None,
    max_detections: int | None,
    classes: Sequence[int] | None,
    version: str | None,
) -> dict[str, str]:
    return _form(
        task=task,
        mode=mode,
        top_k=top_k,
        confidence=confidence,
        iou=iou,
        max_detections=max_detections,
        classes=_classes(classes),
        version=version,
    )


def _images(images: Sequence[ImageInput]) -> Files:
    return [("images", to_upload(image, name=f"image-{i}").part()) for i, image in enumerate(images)]


def batch(images: Sequence[ImageInput], task: Task, **options: Any) -> Call[BatchResult]:
    return Call("POST", "/batch", _model(BatchResult), _batch_form(task, "inline", **options), _images(images))


def submit_batch(images: Sequence[ImageInput], task: Task, **options: Any) -> Call[Job]:
    return Call("POST", "/batch", _model(Job), _batch_form(task, "job", **options), _images(images))


def job(job_id: str, *, offset: int = 0, limit: int = 100) -> Call[Job]:
    return Call("GET", f"/jobs/{job_id}", _model(Job), params={"offset": offset, "limit": limit})


def cancel_job(job_id: str) -> Call[Job]:
    return Call("DELETE", f"/jobs/{job_id}", _model(Job))


def models() -> Call[ModelsResult]:
    return Call("GET", "/models", _model(ModelsResult))


def drift(model: str, *, window: int | None = None, version: str | None = None) -> Call[DriftReport]:
    params = {k: v for k, v in {"window": window, "version": version}.items() if v is not None}
    return Call("GET", f"/drift/{model}", _model(DriftReport), params=params)


def health() -> Call[HealthResult]:
    return Call("GET", "/health", _model(HealthResult), ok=frozenset({503}))


def experiments() -> Call[ExperimentsResult]:
    return Call("GET", "/experiments", _model(ExperimentsResult))


def experiment(experiment_id: str) -> Call[ExperimentResult]:
    return Call("GET", f"/experiments/{experiment_id}", _model(ExperimentResult))


def feedback(
    request_id: str, *, label: str | None = None, correct: bool | None = None, item_index: int = 0
) -> Call[FeedbackResult]:
    """Exactly one of ``label`` (the correct one) or ``correct`` (thumbs up/down); the server refuses both or none."""
    body: dict[str, Any] = {"request_id": request_id, "item_index": item_index}
    body |= {k: v for k, v in (("label", label), ("correct", correct)) if v is not None}
    return Call("POST", "/feedback", _model(FeedbackResult), json=body)
