"""The FastAPI app of the public API: middleware, the error map, routers.

Mounted on the api service at ``/api/v1``; its OpenAPI is merged into BentoML's Swagger
UI at ``/``. Every error leaves here as ``application/problem+json`` (one handler per
exception family, no chains of ``except``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.asgi import full_path
from kernel.errors import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_BASE,
    GatewaySignatureInvalid,
    PayloadTooLarge,
    ServiceError,
    problem_body,
    problem_from_error,
)
from kernel.headers import CLIENT_ID_HEADER, RATE_LIMIT_HEADERS, TIER_HEADER
from kernel.logging import (
    REQUEST_ID_HEADER,
    bind_request_id,
    clean_request_id,
    get_request_id,
    reset_request_id,
)
from kernel.signing import SIGNATURE_HEADER, verify
from services.config import ServingSettings
from services.http import gallery, inference, ops
from services.http import jobs as job_routes
from services.http.deps import BackendProvider, DataPlaneProvider, JobsProvider, install
from services.http.recording import RECORDED_ROUTES, RequestTrace, bind_trace, reset_trace
from services.metrics import HTTP_ERRORS, HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("services.http")
API_PREFIX = "/api/v1"
# Without Traefik, what it publishes without a key: the spec; and Prometheus scrapes /metrics directly.
IN_PROCESS_PUBLIC_PATHS = frozenset({f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/metrics"})
# Behind Traefik, what reaches a replica without ForwardAuth: the spec (public), the load balancer's health
# check and Prometheus. Everything else must carry the gateway's signature when one is configured.
SIGNATURE_EXEMPT_PATHS = IN_PROCESS_PUBLIC_PATHS | {f"{API_PREFIX}/health"}


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return f"{API_PREFIX}{path}" if path else "unmatched"


class RequestContextMiddleware:
    """Request id in and out, body-size guard, access log, HTTP metrics and inference logs (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        data_plane: DataPlaneProvider | None = None,
        trust_gateway_headers: bool = False,
        batch_max_body_bytes: int | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.app = app
        # Behind Traefik with a secret: protected routes need the gateway's signature (kernel/signing.py).
        self.signing_secret = signing_secret
        self.max_body_bytes = max_body_bytes
        # POST /batch may carry a whole batch job's images.
        self.batch_max_body_bytes = batch_max_body_bytes or max_body_bytes
        self.data_plane = data_plane or (lambda: None)
        self.trust_gateway_headers = trust_gateway_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = clean_request_id(headers.get(REQUEST_ID_HEADER.lower()))
        token = bind_request_id(request_id)
        refused = not self._signed(scope, headers, request_id)
        trace = RequestTrace(request_id=request_id) if refused else self._trace(request_id, headers)
        trace_token = bind_trace(trace)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "problem": None}
        # ForwardAuth can only add headers to the request: the gateway's RateLimit-* go back to the caller from here.
        echoed = [
            (name.encode(), headers[name].encode())
            for name in RATE_LIMIT_HEADERS
            if self.trust_gateway_headers and not refused and name in headers
        ]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                for key, value in message["headers"]:
                    if key == b"x-problem-type":
                        status["problem"] = value.decode("latin-1")
                message["headers"].append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"].extend(echoed)
            await send(message)

        limit = self.batch_max_body_bytes if scope["path"].endswith("/batch") else self.max_body_bytes
        try:
            declared = int(headers.get("content-length", "0") or 0)
            if refused:
                await _send_problem(
                    scope, send_with_id, GatewaySignatureInvalid("Send requests through the gateway, with an API key.")
                )
            elif declared > limit:
                await _send_problem(
                    scope,
                    send_with_id,
                    PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes"),
                )
            else:
                await self.app(scope, _limited(receive, limit), send_with_id)
        finally:
            route = _route_template(scope)
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(route, scope["method"], str(status["code"])).inc()
            HTTP_LATENCY.labels(route, scope["method"]).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 2),
                    **trace.caller(),
                },
            )
            if route in RECORDED_ROUTES:
                self._record(trace, route, status["code"], status["problem"], elapsed * 1000)
            reset_trace(trace_token)
            reset_request_id(token)

    def _signed(self, scope: Scope, headers: dict[str, str], request_id: str) -> bool:
        """Whether the request may go on: no signature is asked for, the route is exempt, or the gateway's is valid."""
        if self.signing_secret is None:
            return True
        path = full_path(scope)
        if path in SIGNATURE_EXEMPT_PATHS:
            return True
        raw = scope.get("raw_path")
        uri = raw.decode("latin-1") if raw else path  # as the client sent it, which is what the gateway signed
        query = scope.get("query_string", b"").decode("latin-1")
        return verify(
            self.signing_secret,
            headers.get(SIGNATURE_HEADER),
            method=scope["method"],
            uri=f"{uri}?{query}" if query else uri,
            request_id=request_id,
            headers=headers,
        )

    def _trace(self, request_id: str, headers: dict[str, str]) -> RequestTrace:
        if not self.trust_gateway_headers:
            return RequestTrace(request_id=request_id)
        client, tier = headers.get(CLIENT_ID_HEADER), headers.get(TIER_HEADER)
        return RequestTrace(request_id=request_id, client_id=client and client[:128], tier=tier and tier[:32])

    def _record(self, trace: RequestTrace, route: str, status: int, problem: str | None, latency_ms: float) -> None:
        """Hand the request's records to the log writer: a queue append, never a database call."""
        plane = self.data_plane()
        if plane is None:
            return
        try:
            records = trace.records(route=route, status=status, error_type=problem, latency_ms=latency_ms)
            plane.log_writer.submit(records)
        except Exception:  # a logging bug must not turn an answered request into an error
            log.exception("inference log record failed")


def _limited(receive: Receive, limit: int) -> Receive:
    """Refuse bodies sent without (or with a false) Content-Length once past the limit."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        return message

    return wrapped


async def _send_problem(scope: Scope, send: Send, error: ServiceError) -> None:
    response = _problem_response(error, instance=scope.get("path", ""))
    await response(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}


def _problem_response(error: ServiceError, *, instance: str) -> JSONResponse:
    body = problem_from_error(error, instance=instance, request_id=get_request_id())
    return JSONResponse(body, status_code=error.status_code, media_type=PROBLEM_CONTENT_TYPE)


def _handler(
    to_problem: Callable[[Request, Any], JSONResponse],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = to_problem(request, exc)
        route = _route_template(request.scope)
        HTTP_ERRORS.labels(route, response.headers.get("x-problem-type", "unknown")).inc()
        return response

    return handle


def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if exc.status_code >= 500:
        log.error("request failed", extra={"type": exc.type_slug, "detail": exc.public_message})
    response = _problem_response(exc, instance=request.url.path)
    response.headers["x-problem-type"] = exc.type_slug
    return response


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    body = problem_body(
        status=422,
        type_uri=PROBLEM_TYPE_BASE + "invalid-parameter",
        title="Invalid parameter",
        detail=detail,
        instance=request.url.path,
        request_id=get_request_id(),
        extra={"errors": errors},
    )
    return JSONResponse(
        body, status_code=422, media_type=PROBLEM_CONTENT_TYPE, headers={"x-problem-type": "invalid-parameter"}
    )


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    body = problem_body(
        status=exc.status_code,
        type_uri=PROBLEM_TYPE_BASE + slug,
        title=str(exc.detail),
        detail=f"{request.method} {request.url.path}: {exc.detail}",
        instance=request.url.path,
        request_id=get_request_id(),
    )
    return JSONResponse(
        body,
        status_code=exc.status_code,
        media_type=PROBLEM_CONTENT_TYPE,
        headers={"x-problem-type": slug, **(exc.headers or {})},
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return _service_error(request, ServiceError("an unexpected error occurred; quote the request id"))


def create_app(
    settings: ServingSettings,
    backend: BackendProvider,
    data_plane: DataPlaneProvider | None = None,
    jobs: JobsProvider | None = None,
) -> FastAPI:
    """Build the public API around a backend provider (remote or in-process) and, optionally, a data plane and jobs.

    In local mode with ``CV_AUTH_IN_PROCESS`` the composition root (services/api.py) adds the gateway's
    middleware in front of it (gateway/inprocess.py), leaving ``IN_PROCESS_PUBLIC_PATHS`` open.
    """
    app = FastAPI(
        title="Computer-vision API",
        version="1.0.0",
        description="Image classification, object detection and similarity search.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        form_limits={"max_files": settings.job_max_items},  # a batch job's images come as one form
    )
    install(app, settings, backend, data_plane, jobs)
    app.add_exception_handler(ServiceError, _handler(_service_error))
    app.add_exception_handler(RequestValidationError, _handler(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _handler(_http_error))
    app.add_exception_handler(Exception, _handler(_unexpected))
    for module in (inference, job_routes, gallery, ops):
        app.include_router(module.router)
    max_body = settings.max_image_bytes * settings.max_batch_items + (1 << 20)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=max_body,
        batch_max_body_bytes=max(max_body, settings.job_max_request_bytes),
        data_plane=data_plane,
        trust_gateway_headers=settings.gateway_headers_trusted,
        signing_secret=settings.gateway_signature_required,
    )
    return app
