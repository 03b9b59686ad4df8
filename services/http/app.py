"""The FastAPI app of the public API: middleware, the error map, routers.

Mounted on the api service at ``/api/v1``; its OpenAPI is merged into BentoML's Swagger
UI at ``/``. Every error leaves here as ``application/problem+json`` (one handler per
exception family, no chains of ``except``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernel.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE, ServiceError, problem_body
from kernel.logging import get_request_id
from services.config import ServingSettings
from services.http import drift, experiments, feedback, gallery, inference, ops
from services.http import jobs as job_routes
from services.http.admission import GUARDED_PATHS, AdmissionController, AdmissionMiddleware, DemandMiddleware
from services.http.deps import BackendProvider, DataPlaneProvider, JobsProvider, install
from services.http.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    GatewayCallerMiddleware,
    GatewaySignatureMiddleware,
    RateLimitEchoMiddleware,
    RequestIdMiddleware,
)
from services.http.paths import API_PREFIX, IN_PROCESS_PUBLIC_PATHS, SIGNATURE_EXEMPT_PATHS, route_template
from services.http.problems import problem_response
from services.http.recording import InferenceLogMiddleware, Mirror, Sink
from services.metrics import HTTP_ERRORS

log = logging.getLogger("services.http")
__all__ = ["API_PREFIX", "IN_PROCESS_PUBLIC_PATHS", "SIGNATURE_EXEMPT_PATHS", "create_app"]


def _handler(
    to_problem: Callable[[Request, Any], JSONResponse],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = to_problem(request, exc)
        route = route_template(request.scope)
        HTTP_ERRORS.labels(route, response.headers.get("x-problem-type", "unknown")).inc()
        return response

    return handle


def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if exc.status_code >= 500:
        log.error("request failed", extra={"type": exc.type_slug, "detail": exc.public_message})
    response = problem_response(exc, instance=request.url.path)
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
    app.state.admission = (
        AdmissionController(
            settings.admission_max_inflight,
            settings.admission_queue_timeout_ms / 1000,
            settings.admission_retry_after_s,
            settings.admission_retry_after_max_s,
            target_s=settings.admission_target_ms / 1000,
            min_inflight=settings.admission_min_inflight,
        )
        if settings.admission_enabled
        else None
    )
    app.add_exception_handler(ServiceError, _handler(_service_error))
    app.add_exception_handler(RequestValidationError, _handler(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _handler(_http_error))
    app.add_exception_handler(Exception, _handler(_unexpected))
    for module in (inference, job_routes, gallery, experiments, feedback, ops, drift):
        app.include_router(module.router)
    _add_middleware(app, settings, data_plane or (lambda: None))
    return app


def _add_middleware(app: FastAPI, settings: ServingSettings, data_plane: DataPlaneProvider) -> None:
    """Stack the middleware, innermost first (each one added wraps the ones before it)."""

    def sink() -> Sink | None:
        plane = data_plane()
        return plane.log_writer if plane is not None else None

    def mirror() -> Mirror | None:
        plane = data_plane()
        return plane.mirror if plane is not None else None

    max_body = settings.max_image_bytes * settings.max_batch_items + (1 << 20)
    app.add_middleware(InferenceLogMiddleware, sink=sink, mirror=mirror)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=max_body,
        batch_max_body_bytes=max(max_body, settings.job_max_request_bytes),
    )
    admission: AdmissionController | None = app.state.admission
    if admission is not None:  # outside the inference log: a refused request ran nothing and logs no record
        app.add_middleware(AdmissionMiddleware, controller=admission, paths=GUARDED_PATHS)
    else:  # nothing refused, but the load still counted (ADR 0019)
        app.add_middleware(DemandMiddleware, paths=GUARDED_PATHS)
    if settings.gateway_headers_trusted:
        app.add_middleware(RateLimitEchoMiddleware)
        app.add_middleware(GatewayCallerMiddleware)
    if settings.gateway_signature_required is not None:
        app.add_middleware(GatewaySignatureMiddleware, secret=settings.gateway_signature_required)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
