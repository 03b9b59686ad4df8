"""The api's middleware, one concern each (pure ASGI), in the order ``create_app`` stacks them.

Outermost first: :class:`RequestIdMiddleware` (request id in and out, the request context),
:class:`AccessLogMiddleware` (access log and HTTP metrics), :class:`GatewaySignatureMiddleware`
(401 without the gateway's signature), :class:`GatewayCallerMiddleware` and :class:`RateLimitEchoMiddleware`
(behind a trusted gateway: the caller, and its ``RateLimit-*`` headers back to the client), admission control of
the inference routes (services/http/admission.py: 503 ``overloaded`` before the body is parsed),
:class:`BodyLimitMiddleware` (413 before any route), then the inference-log hand-off
(services/http/recording.py). So a refused signature still has a request id and is logged and counted,
and an oversized body is refused before any route reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.asgi import full_path
from kernel.errors import GatewaySignatureInvalid, PayloadTooLarge
from kernel.headers import CLIENT_ID_HEADER, RATE_LIMIT_HEADERS, TIER_HEADER
from kernel.logging import REQUEST_ID_HEADER, bind_request_id, clean_request_id, reset_request_id
from kernel.signing import SIGNATURE_HEADER, verify
from services.http.context import RequestContext, add_caller, bind_context, current_context, reset_context
from services.http.paths import SIGNATURE_EXEMPT_PATHS, route_template
from services.http.problems import send_problem
from services.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("services.http")


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def on_response_start(send: Send, hook: Callable[[Message], None]) -> Send:
    """``send``, calling ``hook`` on the response's start message (to read or add headers) first."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            hook(message)
        await send(message)

    return wrapped


class _HttpOnly:
    """Base of middleware that acts on HTTP requests only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestIdMiddleware(_HttpOnly):
    """The caller's ``X-Request-ID`` (or a new one) bound for the request and sent back; the request context."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = clean_request_id(request_headers(scope).get(REQUEST_ID_HEADER.lower()))
        token = bind_request_id(request_id)
        context_token = bind_context(RequestContext(request_id=request_id))

        def add_id(message: Message) -> None:
            message["headers"].append((REQUEST_ID_HEADER.encode(), request_id.encode()))

        try:
            await self.app(scope, receive, on_response_start(send, add_id))
        finally:
            reset_context(context_token)
            reset_request_id(token)


class AccessLogMiddleware(_HttpOnly):
    """One log line and the HTTP metrics per request, labelled by route template."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = {"code": 500}  # what an exception that escapes the app becomes

        def note(message: Message) -> None:
            status["code"] = message["status"]

        try:
            await self.app(scope, receive, on_response_start(send, note))
        finally:
            route = route_template(scope)
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
                    **current_context().caller(),
                },
            )


class GatewaySignatureMiddleware(_HttpOnly):
    """Behind Traefik with a secret: 401 for a protected route without the gateway's signature (kernel/signing.py)."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        super().__init__(app)
        self.secret = secret

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.signed(scope):
            await self.app(scope, receive, send)
        else:
            refused = GatewaySignatureInvalid("Send requests through the gateway, with an API key.")
            await send_problem(scope, send, refused)

    def signed(self, scope: Scope) -> bool:
        """Whether the route is exempt or the gateway's signature is valid."""
        path = full_path(scope)
        if path in SIGNATURE_EXEMPT_PATHS:
            return True
        headers = request_headers(scope)
        raw = scope.get("raw_path")
        uri = raw.decode("latin-1") if raw else path  # as the client sent it, which is what the gateway signed
        query = scope.get("query_string", b"").decode("latin-1")
        return verify(
            self.secret,
            headers.get(SIGNATURE_HEADER),
            method=scope["method"],
            uri=f"{uri}?{query}" if query else uri,
            request_id=current_context().request_id or "",
            headers=headers,
        )


class GatewayCallerMiddleware(_HttpOnly):
    """Behind a trusted gateway: its client id and tier join the request context (cut to the log's columns)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        client, tier = headers.get(CLIENT_ID_HEADER), headers.get(TIER_HEADER)
        add_caller(client and client[:128], tier and tier[:32])
        await self.app(scope, receive, send)


class RateLimitEchoMiddleware(_HttpOnly):
    """Behind a trusted gateway: its ``RateLimit-*`` headers go back to the caller.

    ForwardAuth can only add headers to the request, so the api returns them on the response.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        echoed = [(name.encode(), headers[name].encode()) for name in RATE_LIMIT_HEADERS if name in headers]

        def echo(message: Message) -> None:
            message["headers"].extend(echoed)

        await self.app(scope, receive, on_response_start(send, echo) if echoed else send)


class BodyLimitMiddleware(_HttpOnly):
    """413 for a body over the limit: at once from ``Content-Length``, or once that much has been read."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, batch_max_body_bytes: int | None = None) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes
        # POST /batch may carry a whole batch job's images.
        self.batch_max_body_bytes = batch_max_body_bytes or max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.batch_max_body_bytes if scope["path"].endswith("/batch") else self.max_body_bytes
        declared = int(request_headers(scope).get("content-length", "0") or 0)
        if declared > limit:
            too_large = PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes")
            await send_problem(scope, send, too_large)
            return
        await self.app(scope, limited(receive, limit), send)


def limited(receive: Receive, limit: int) -> Receive:
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
