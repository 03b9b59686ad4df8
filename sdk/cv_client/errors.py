"""Errors the server reports, as exceptions built from its problem+json bodies (RFC 9457)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

PROBLEM_TYPE_BASE = "urn:cv-api:problem:"
REQUEST_ID_HEADER = "X-Request-ID"


class CvClientError(Exception):
    """Base of every error this SDK raises."""


class JobTimeout(CvClientError):
    """:meth:`Client.wait` ran out of time before the job finished."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} not finished after {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class ApiError(CvClientError):
    """An error answer from the API.

    Attributes:
        status: The HTTP status.
        type: The problem ``type`` URI (``urn:cv-api:problem:invalid-image``), or None for a non-problem body.
        slug: The type's last part (``invalid-image``), or None.
        title: The problem's title, or the HTTP reason phrase.
        detail: What went wrong, for a person to read.
        instance: The path the problem is about.
        request_id: The server's request id, to quote when reporting a problem.
        retry_after: Seconds the server asked to wait (429, 503), or None.
        body: The decoded JSON body, or None when the body was not JSON.
    """

    status_code: ClassVar[int | None] = None

    def __init__(
        self,
        *,
        status: int,
        title: str,
        detail: str,
        type: str | None = None,
        instance: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    @property
    def slug(self) -> str | None:
        """The problem type without its ``urn:cv-api:problem:`` prefix."""
        if self.type is None:
            return None
        return self.type.removeprefix(PROBLEM_TYPE_BASE)


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415


class InvalidParameter(ApiError):
    status_code = 422


class RateLimited(ApiError):
    status_code = 429


class ServerError(ApiError):
    status_code = 500


class ServiceUnavailable(ApiError):
    status_code = 503


ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidParameter,
        RateLimited,
        ServerError,
        ServiceUnavailable,
    )
    if cls.status_code is not None
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), or None."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed exception for an error response; a body that is not a problem still makes an ApiError."""
    cls = ERRORS_BY_STATUS.get(response.status_code) or (ServerError if response.status_code >= 500 else ApiError)
    body = _json_body(response)
    header_id = response.headers.get(REQUEST_ID_HEADER)
    retry_after = retry_after_seconds(response)
    if body is not None and "title" in body:
        return cls(
            status=response.status_code,
            type=body.get("type"),
            title=str(body["title"]),
            detail=str(body.get("detail") or body["title"]),
            instance=body.get("instance"),
            request_id=body.get("request_id") or header_id,
            retry_after=retry_after,
            body=body,
        )
    text = response.text.strip()
    return cls(
        status=response.status_code,
        title=response.reason_phrase or "HTTP error",
        detail=(text[:500] if text else response.reason_phrase) or f"HTTP {response.status_code}",
        request_id=header_id,
        retry_after=retry_after,
        body=body,
    )
