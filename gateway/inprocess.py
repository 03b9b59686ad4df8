"""The gateway's policy inside the api process: local mode without Traefik (``CV_AUTH_IN_PROCESS=true``).

The same :meth:`Gateway.decide` that answers Traefik's ForwardAuth runs here as ASGI middleware in
front of the api's routes, doing what Traefik does with its answer: a refusal goes back to the caller
as is; on success the caller's identity headers are replaced by the gateway's (so the api reads them
as it does behind Traefik) and the ``RateLimit-*`` headers are added to the response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import Gateway, build_gateway
from gateway.config import GatewaySettings
from kernel.asgi import full_path
from kernel.headers import GATEWAY_HEADERS, RATE_LIMIT_HEADERS
from kernel.logging import REQUEST_ID_HEADER
from kernel.signing import SIGNATURE_HEADER

# What the gateway says about a request; a caller's own copies never reach the api.
_STRIPPED = {
    name.lower().encode() for name in (*GATEWAY_HEADERS, *RATE_LIMIT_HEADERS, REQUEST_ID_HEADER, SIGNATURE_HEADER)
}
_RATE = set(RATE_LIMIT_HEADERS)


def in_process_gateway(
    api_database_url: str | None, api_data_dir: Path, settings: GatewaySettings | None = None
) -> Gateway:
    """The gateway an api process runs (``CV_GATEWAY_*`` settings); keys in the api's database unless set apart."""
    settings = settings or GatewaySettings()
    if settings.database_url is None:
        settings = settings.model_copy(update={"database_url": api_database_url, "data_dir": api_data_dir})
    return build_gateway(settings)


def install_gateway(app: FastAPI, gateway: Callable[[], Gateway], public_paths: Iterable[str]) -> None:
    """Put the gateway's policy in front of every route of ``app`` but ``public_paths``.

    Added last, so outermost, as Traefik is: refusals never reach the api's own middleware or routes.
    """
    app.add_middleware(GatewayMiddleware, gateway=gateway, public_paths=public_paths)


class GatewayMiddleware:
    """Pure ASGI middleware: the gateway's verdict before every route but ``public_paths``."""

    def __init__(self, app: ASGIApp, gateway: Callable[[], Gateway], public_paths: Iterable[str] = ()) -> None:
        self.app = app
        self._factory = gateway
        self._gateway: Gateway | None = None
        self.public_paths = frozenset(public_paths)

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:  # built on the first request, in the process that serves
            self._gateway = self._factory()
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = full_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.public_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        verdict = await run_in_threadpool(self.gateway.decide, headers, f"{path}?{query}" if query else path)
        if not verdict.allowed:
            await verdict.response()(scope, receive, send)
            return
        upstream = [
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in verdict.headers.items()
            if name.lower() not in _RATE
        ]
        kept = [(k, v) for k, v in scope["headers"] if k.lower() not in _STRIPPED]
        rate = [(name.encode(), value.encode()) for name, value in verdict.headers.items() if name.lower() in _RATE]

        async def send_with_rate(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *rate]
            await send(message)

        await self.app({**scope, "headers": kept + upstream}, receive, send_with_rate)
