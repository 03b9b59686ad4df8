"""An ASGI app built on first use, so that importing the module that mounts it stays light.

``bentoml serve services.api:Api`` imports ``services.api`` twice over: in the worker that answers requests, and in
BentoML's supervisor, which only reads the service's configuration and starts the workers. Built at import, the
FastAPI app drags the whole data plane (SQLAlchemy, Celery, Redis, FAISS, every router) into the supervisor, which
never serves a request: 167 MB of its own memory (USS) per api replica in benchmarks/reports/memory.md. Mounted as a
:class:`DeferredApp`, the app is built in the worker (``Api.__init__`` calls :meth:`DeferredApp.get` so the first
request does not pay for it) and never in the supervisor.

BentoML enters a mounted app's lifespan only when the mounted object is a Starlette app, which this wrapper is not:
start-up and shut-down work of the api belongs in ``Api.__init__`` and its ``@bentoml.on_startup`` /
``@bentoml.on_shutdown`` hooks, as it always has, not in the FastAPI app's lifespan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send


class DeferredApp:
    """The app ``factory`` makes, made once, on the first call that needs it."""

    def __init__(self, factory: Callable[[], FastAPI]) -> None:
        self._factory = factory
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._app is not None

    def get(self) -> FastAPI:
        """The app, built now if it was not yet."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.get()(scope, receive, send)

    # What BentoML and our tools read from a mounted app: its routes (the service schema, `bentoml build`) and its
    # OpenAPI document (services/http/pages.py, scripts/export_openapi.py). Each builds the app when asked.
    @property
    def routes(self) -> list[Any]:
        return list(self.get().routes)

    def openapi(self) -> dict[str, Any]:
        return self.get().openapi()
