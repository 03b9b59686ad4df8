"""One exception hierarchy for the whole service, mapped in one place to RFC 9457 problems.

Each class carries its HTTP status, a problem ``type`` slug and a title; the ``detail`` is
the client-safe public message. :func:`problem_body` is the only place that turns an
error into an ``application/problem+json`` body.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:cv-api:problem:"


class ServiceError(Exception):
    """Base of every error the API reports to a caller."""

    status_code: ClassVar[int] = 500
    type_slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"
    # What a caller should do about it: the error catalogue (docs/api.md) and the OpenAPI spec quote it.
    remedy: ClassVar[str] = "Retry later; if it persists, report the response's request_id to the operators."

    def __init__(self, public_message: str | None = None, **extra: Any) -> None:
        self.public_message = public_message or self.title
        self.extra = extra
        super().__init__(self.public_message)

    @property
    def type_uri(self) -> str:
        """The problem ``type`` URI."""
        return PROBLEM_TYPE_BASE + self.type_slug

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the problem carries (``Retry-After`` on a refusal); none by default."""
        return {}


class InvalidParameter(ServiceError):
    status_code = 422
    type_slug = "invalid-parameter"
    title = "Invalid parameter"
    remedy = "Fix the named field (the `errors` member lists each one) and send the request again."


class InvalidImage(ServiceError):
    """The bytes are not a decodable image (corrupt, truncated, empty)."""

    status_code = 400
    type_slug = "invalid-image"
    title = "Invalid image"
    remedy = "Send a complete image file in a supported format; these bytes could not be decoded."


class PayloadTooLarge(ServiceError):
    status_code = 413
    type_slug = "payload-too-large"
    title = "Payload too large"
    remedy = "Send a smaller file or fewer images per request; use `mode=job` on /batch for large batches."


class ImageTooLarge(ServiceError):
    """Too many pixels: a decompression bomb or simply an oversized image."""

    status_code = 413
    type_slug = "image-too-large"
    title = "Image has too many pixels"
    remedy = "Downscale the image below the pixel limit the detail names, then send it again."


class UnsupportedMediaType(ServiceError):
    status_code = 415
    type_slug = "unsupported-media-type"
    title = "Unsupported media type"
    remedy = "Send one of the image formats the detail lists, with a matching Content-Type."


class NotFound(ServiceError):
    status_code = 404
    type_slug = "not-found"
    title = "Not found"
    remedy = "Check the id in the path; it may have been deleted or never existed."


class VersionNotFound(NotFound):
    type_slug = "version-not-found"
    title = "Model version not found"
    remedy = "Pin a version that GET /api/v1/models lists, or leave `version` out to get the default."


class ModelUnavailable(ServiceError):
    """No loaded version of the model can answer."""

    status_code = 503
    type_slug = "model-unavailable"
    title = "Model unavailable"
    remedy = "Retry after a few seconds; GET /api/v1/health shows which model is down."


class Overloaded(ServiceError):
    """More inference requests than the api can answer in time: refused at once, before any model ran.

    Admission control (services/http/admission.py) sends it with ``Retry-After``.
    """

    status_code = 503
    type_slug = "overloaded"
    title = "Service overloaded"
    remedy = "Wait for the Retry-After seconds, then send the request again; nothing of this request was run."

    def __init__(self, public_message: str | None = None, *, retry_after_s: int = 1, **extra: Any) -> None:
        super().__init__(public_message, **extra)
        self.retry_after_s = max(1, retry_after_s)

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (RFC 9110)."""
        return {"Retry-After": str(self.retry_after_s)}


class InferenceFailed(ServiceError):
    """A model ran and failed on this input; other inputs are unaffected."""

    status_code = 500
    type_slug = "inference-failed"
    title = "Inference failed"
    remedy = "Retry once; if the same image fails again, report the request_id with the image."


class WorkerLost(ServiceError):
    """A batch-job item took a worker down every time it ran (services/jobs/processing.py)."""

    status_code = 500
    type_slug = "worker-lost"
    title = "Worker lost while processing the item"
    remedy = "The item crashed a worker on every attempt; check the image, then resubmit it alone."


class ImageMissing(ServiceError):
    """A batch-job image is not in the job store the worker reads."""

    status_code = 500
    type_slug = "job-image-missing"
    title = "Job image missing"
    remedy = "Resubmit the job; its stored image expired or was removed before a worker read it."


class ReferenceNotFound(NotFound):
    """The model version answering requests has no drift reference profile to compare them with."""

    type_slug = "drift-reference-not-found"
    title = "No drift reference for this model version"
    remedy = "Add <model>-<version>.json to CV_DRIFT_REFERENCE_DIR (artifacts/drift/), or pin a version that has one."


class DriftUnavailable(ServiceError):
    """Drift checks need the inference log, which this server does not keep."""

    status_code = 503
    type_slug = "drift-unavailable"
    title = "Drift detection unavailable"
    remedy = "Ask a server that keeps the inference log (the api service with its database)."


class JobsUnavailable(ServiceError):
    """The job database or broker cannot take a batch job now."""

    status_code = 503
    type_slug = "jobs-unavailable"
    title = "Batch jobs unavailable"
    remedy = "Retry later, or send the images inline (fewer per request) while the job queue is down."


class GatewaySignatureInvalid(ServiceError):
    """Behind the gateway, a protected route reached without the gateway's valid signature (kernel/signing.py)."""

    status_code = 401
    type_slug = "gateway-signature-invalid"
    title = "Not through the gateway"
    remedy = "Call the API through the gateway (Traefik), not a replica's port directly."


class GalleryModelMismatch(ServiceError):
    """The gallery's vectors come from another embedder version than the one answering: not comparable."""

    status_code = 409
    type_slug = "gallery-model-mismatch"
    title = "Gallery built with another embedder version"
    remedy = "Rebuild the gallery with the embedder version that answers (make gallery), or pin that version."


class DatabaseUnavailable(ServiceError):
    """A route that reads the database on a server that has none, or cannot reach it."""

    status_code = 503
    type_slug = "database-unavailable"
    title = "Database unavailable"
    remedy = "Retry later; the inference logs, experiments and feedback live in the database, which is down."


class ExperimentConflict(ServiceError):
    """An experiment change that contradicts another experiment or its own state (services/experiments)."""

    status_code = 409
    type_slug = "experiment-conflict"
    title = "Experiment conflict"
    remedy = "Stop or pause the model's other experiment first, or choose a state change the experiment allows."


ERRORS_BY_SLUG: dict[str, type[ServiceError]] = {
    cls.type_slug: cls
    for cls in (
        ServiceError,
        InvalidParameter,
        InvalidImage,
        PayloadTooLarge,
        ImageTooLarge,
        UnsupportedMediaType,
        NotFound,
        VersionNotFound,
        ModelUnavailable,
        Overloaded,
        InferenceFailed,
        WorkerLost,
        ImageMissing,
        JobsUnavailable,
        GatewaySignatureInvalid,
        GalleryModelMismatch,
        DatabaseUnavailable,
        ExperimentConflict,
        ReferenceNotFound,
        DriftUnavailable,
    )
}


def error_to_dict(error: ServiceError) -> dict[str, Any]:
    """Serialise an error so it can cross a process boundary (model service -> api)."""
    return {"type": error.type_slug, "detail": error.public_message, "extra": error.extra}


def error_from_dict(data: dict[str, Any]) -> ServiceError:
    """Rebuild an error serialised by :func:`error_to_dict`."""
    cls = ERRORS_BY_SLUG.get(str(data.get("type")), ServiceError)
    return cls(str(data.get("detail") or cls.title), **dict(data.get("extra") or {}))


def problem_body(
    *,
    status: int,
    type_uri: str,
    title: str,
    detail: str,
    instance: str,
    request_id: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    return body


def problem_from_error(error: ServiceError, *, instance: str, request_id: str | None) -> dict[str, Any]:
    """The problem document for a :class:`ServiceError`."""
    return problem_body(
        status=error.status_code,
        type_uri=error.type_uri,
        title=error.title,
        detail=error.public_message,
        instance=instance,
        request_id=request_id,
        extra=error.extra or None,
    )
