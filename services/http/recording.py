"""One inference-log record per image, gathered while a request runs and handed to the writer at its end.

``RequestContextMiddleware`` opens a :class:`RequestTrace` for every request and binds it to a
context variable; ``read_image`` notes each image, ``answer`` (and the search route) notes
each result, and the middleware turns the trace into records once the response has gone out:
one per image, or one for the request when it failed before any image was read.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from kernel.db.tables import InferenceLogCreate
from kernel.errors import ServiceError
from services.imaging import DecodedImage
from services.models.contract import Prediction

# Route templates (under /api/v1) whose requests are logged, and the model each one runs.
# /batch runs the model its ``task`` names; the route says which (RequestTrace.model).
RECORDED_ROUTES: dict[str, str | None] = {
    "/api/v1/classify": "classifier",
    "/api/v1/detect": "detector",
    "/api/v1/search": "embedder",
    "/api/v1/batch": None,
}


@dataclass
class ImageEntry:
    image: DecodedImage | None = None
    prediction: Prediction | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    status: int | None = None
    error_type: str | None = None


@dataclass
class RequestTrace:
    """What one request did to each of its images."""

    request_id: str | None
    client_id: str | None = None
    tier: str | None = None
    model: str | None = None
    entries: list[ImageEntry] = field(default_factory=list)
    # Set when the request became a batch job: its images are logged by the worker, one row per item.
    job_id: str | None = None

    def caller(self) -> dict[str, str]:
        """Who called, as the gateway said (for log lines): empty without a trusted gateway."""
        return {k: v for k, v in (("client_id", self.client_id), ("tier", self.tier)) if v}

    def image_read(self, image: DecodedImage) -> None:
        self.entries.append(ImageEntry(image=image))

    def image_refused(self, error: ServiceError) -> None:
        self.entries.append(ImageEntry(status=error.status_code, error_type=error.type_slug))

    def answered(self, image: DecodedImage, prediction: Prediction, result: dict[str, Any], *, cached: bool) -> None:
        entry = self._entry(image)
        entry.prediction, entry.summary, entry.cached, entry.status = prediction, summarize(result), cached, 200

    def failed(self, image: DecodedImage, error: ServiceError) -> None:
        entry = self._entry(image)
        entry.status, entry.error_type = error.status_code, error.type_slug

    def _entry(self, image: DecodedImage) -> ImageEntry:
        for entry in self.entries:
            if entry.image is image:
                return entry
        entry = ImageEntry(image=image)
        self.entries.append(entry)
        return entry

    def records(
        self, *, route: str, status: int, error_type: str | None, latency_ms: float
    ) -> list[InferenceLogCreate]:
        """One record per image (or one for the request), filled from the response where an image says nothing."""
        if self.job_id is not None:
            return []
        model = self.model or RECORDED_ROUTES.get(route)
        common: dict[str, Any] = {
            "request_id": self.request_id,
            "client_id": self.client_id,
            "tier": self.tier,
            "route": route,
            "latency_ms": round(latency_ms, 3),
        }
        entries = self.entries or [ImageEntry()]
        records = []
        for index, entry in enumerate(entries):
            prediction, image = entry.prediction, entry.image
            own_status = entry.status or status
            records.append(
                InferenceLogCreate(
                    **common,
                    item_index=index,
                    model=prediction.model if prediction else model,
                    version=prediction.version if prediction else None,
                    precision=prediction.precision if prediction else None,
                    status=own_status,
                    cached=entry.cached,
                    error_type=entry.error_type or (error_type if own_status >= 400 else None),
                    image_sha256=image.sha256 if image else None,
                    image_bytes=image.byte_size if image else None,
                    image_width=image.width if image else None,
                    image_height=image.height if image else None,
                    image_format=image.format if image else None,
                    **entry.summary,
                )
            )
        return records


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Top label and score (classify), best box and box count (detect), best hit (search)."""
    if "detections" in result:
        boxes = result["detections"]
        best = max(boxes, key=lambda d: d.get("score", 0.0)) if boxes else None
        return {"box_count": len(boxes), **_top(best, "label")}
    for key, name in (("predictions", "label"), ("results", "id")):
        if key in result:
            return _top(result[key][0] if result[key] else None, name)
    return {}


def _top(entry: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if entry is None:
        return {}
    label = entry.get(name)
    return {"top_label": None if label is None else str(label)[:256], "top_score": entry.get("score")}


_trace: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("request_trace", default=None)


def current_trace() -> RequestTrace:
    """The trace of the request being handled (a detached one outside a request)."""
    trace = _trace.get()
    return trace if trace is not None else RequestTrace(request_id=None)


def bind_trace(trace: RequestTrace) -> contextvars.Token[RequestTrace | None]:
    return _trace.set(trace)


def reset_trace(token: contextvars.Token[RequestTrace | None]) -> None:
    _trace.reset(token)
