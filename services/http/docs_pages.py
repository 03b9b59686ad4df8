"""The page a user lands on: this API's Swagger UI at ``/`` and its OpenAPI document at ``/docs.json``.

BentoML's own index page carries its branding, a tag manager and badges fetched from the internet, and its
``/docs.json`` lists BentoML's infrastructure routes beside ours under the title ``api:dev``. This ASGI
middleware, added to the api service (services/api.py), answers those two paths itself; everything else
passes through. The Swagger UI's scripts and styles are the copies BentoML serves from ``/static_content``,
so the page needs nothing outside the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = Path(__file__).with_name("static") / "index.html"


class DocsPagesMiddleware:
    """Answer ``GET /`` (the Swagger UI) and ``GET /docs.json`` (the spec); pass everything else on."""

    def __init__(self, app: ASGIApp, spec: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.spec = spec
        self.page = PAGE.read_text()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == "/":
                await HTMLResponse(self.page)(scope, receive, send)
                return
            if scope["path"] == "/docs.json":
                await JSONResponse(self.spec())(scope, receive, send)
                return
        await self.app(scope, receive, send)
