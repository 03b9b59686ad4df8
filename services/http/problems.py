"""Problem responses (RFC 9457) sent by the error handlers and by middleware that answers on its own."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import Message, Scope, Send

from kernel.errors import PROBLEM_CONTENT_TYPE, ServiceError, problem_from_error
from kernel.logging import get_request_id


def problem_response(error: ServiceError, *, instance: str) -> JSONResponse:
    """``error`` as ``application/problem+json`` with the request id."""
    body = problem_from_error(error, instance=instance, request_id=get_request_id())
    headers = error.headers or None
    return JSONResponse(body, status_code=error.status_code, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


async def send_problem(scope: Scope, send: Send, error: ServiceError) -> None:
    """Answer ``error`` from middleware, without running the app (and without reading the body)."""
    response = problem_response(error, instance=scope.get("path", ""))
    await response(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}
