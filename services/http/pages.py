"""The pages a person opens in a browser: the Swagger UI at ``/``, the spec at ``/docs.json``, the demo at ``/ui``.

BentoML's own index page carries its branding, a tag manager and badges fetched from the internet, and its
``/docs.json`` lists BentoML's infrastructure routes beside ours under the title ``api:dev``. This ASGI
middleware, added to the api service (services/api.py), answers these paths itself; everything else passes
through. The Swagger UI's scripts and styles are the copies BentoML serves from ``/static_content``, and the demo
page is plain HTML, CSS and JavaScript from ``services/http/static/``: nothing is fetched from outside the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC = Path(__file__).with_name("static")
# path -> (file under static/, media type)
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui": ("ui.html", "text/html; charset=utf-8"),
    "/ui/ui.js": ("ui.js", "text/javascript; charset=utf-8"),
    "/ui/ui.css": ("ui.css", "text/css; charset=utf-8"),
}


class PagesMiddleware:
    """Answer ``GET`` on :data:`PAGES` and ``/docs.json`` (the spec); pass everything else on."""

    def __init__(self, app: ASGIApp, spec: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.spec = spec
        self.pages = {path: ((STATIC / name).read_bytes(), media) for path, (name, media) in PAGES.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == "/ui/":
                await Response(status_code=308, headers={"location": "/ui"})(scope, receive, send)
                return
            if path in self.pages:
                body, media = self.pages[path]
                response = HTMLResponse(body) if media.startswith("text/html") else Response(body, media_type=media)
                response.headers["cache-control"] = "no-cache"
                await response(scope, receive, send)
                return
            if path == "/docs.json":
                await JSONResponse(self.spec())(scope, receive, send)
                return
        await self.app(scope, receive, send)
