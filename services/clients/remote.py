"""The model services over BentoML's clients: one error mapping for the api's and the job workers' calls.

The api holds a ``bentoml.depends`` handle per service and calls its ``to_async`` side
(:class:`AsyncRemoteClient`: no thread hop on the hot path); a job worker makes BentoML's
``SyncHTTPClient`` per service (:class:`RemoteClient`, with :func:`bentoml_client`). Both go through
:class:`~services.clients.base.Connections`, so a failed call means the same thing everywhere.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import aiohttp

from kernel.errors import ModelUnavailable
from services.clients.base import Connections, ModelClient, gallery_added, outcomes, search_outcomes
from services.index.search import SearchItem, SearchOutcome
from services.models.catalogue import entry
from services.models.worker import InferenceItem, Outcome

# The media types bentoml.depends uses: pickle to the model services `bentoml serve` started beside the api
# (the pixels travel as numpy arrays), JSON to a service deployed apart (a "main" server refuses pickle; the
# pixels travel as base64, services/models/worker.py's RGBArray).
PICKLE = "application/vnd.bentoml+pickle"
JSON = "application/json"
EMBEDDER = "embedder"  # the model whose service holds the gallery
# What BentoML's client (aiohttp) raises when it sent a call on a pooled keep-alive connection the service had just
# closed: the server's idle timeout and the client's pool expiry race (uvicorn's 5 s under `bentoml serve` against
# aiohttp's 15 s; a load balancer's idle timeout in between does the same). A call that met one never ran, or ran as
# a pure function of its input, so the idempotent calls go once more, on a fresh connection.
STALE_CONNECTION: tuple[type[Exception], ...] = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)

log = logging.getLogger(__name__)


def service_class(model: str) -> Any:
    """The BentoML service class of ``model``, from the catalogue (importing it loads BentoML)."""
    found = entry(model)
    return getattr(importlib.import_module(found.service_module), found.service_class)


def bentoml_client(model: str, url: str, media_type: str = PICKLE) -> Any:
    """BentoML's blocking HTTP client of ``model``'s service at ``url``, speaking ``media_type``."""
    # BentoML's own HTTP client with the media type bentoml.depends uses (the public SyncHTTPClient fixes JSON,
    # which cannot carry numpy pixels); bentoml is pinned (pyproject.toml), so this internal import is stable.
    from _bentoml_impl.client.http import SyncHTTPClient

    return SyncHTTPClient(url, media_type=media_type, service=service_class(model), server_ready_timeout=0, timeout=300)


class RemoteClient:
    """The model services through blocking clients; a model without a service goes to ``fallback``.

    Args:
        connect: Makes the client of a model's service.
        models: The models that have a service.
        fallback: Answers for the other models (the models in process); None: they are unavailable.
    """

    def __init__(
        self, connect: Callable[[str], Any], models: Collection[str], fallback: ModelClient | None = None
    ) -> None:
        self.connections = Connections(connect, models)
        self.fallback = fallback

    @property
    def models(self) -> frozenset[str]:
        return self.connections.models

    def _local(self, model: str) -> ModelClient | None:
        if model in self.connections.models:
            return None
        if self.fallback is None:
            raise ModelUnavailable(f"no address for the {model} service")
        return self.fallback

    def _call(self, model: str, method: str, *args: Any) -> Any:
        with self.connections.calling(model, method) as client:
            return getattr(client, method)(*args)

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        local = self._local(model)
        return local.infer(model, items) if local else outcomes(self._call(model, "infer", items))

    def status(self, model: str) -> dict[str, Any]:
        local = self._local(model)
        return local.status(model) if local else dict(self._call(model, "status"))

    def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        local = self._local(EMBEDDER)
        return local.search(items) if local else search_outcomes(self._call(EMBEDDER, "search", items))

    def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        local = self._local(EMBEDDER)
        return (
            local.gallery_add(item, metadata)
            if local
            else gallery_added(self._call(EMBEDDER, "gallery_add", item, metadata))
        )

    def gallery_remove(self, item_id: str) -> bool:
        local = self._local(EMBEDDER)
        return local.gallery_remove(item_id) if local else bool(self._call(EMBEDDER, "gallery_remove", item_id))

    def gallery_size(self) -> int:
        local = self._local(EMBEDDER)
        return local.gallery_size() if local else int(self._call(EMBEDDER, "gallery_size"))


class AsyncRemoteClient:
    """The model services through their ``bentoml.depends`` handles' ``to_async`` side (the api under serve).

    A handle's methods exist only once BentoML has entered it (``RemoteProxy.__aenter__``), which the server does
    after the service's start-up hooks have run: a hook that calls a model service at once (the shadow mirror's first
    status read) met ``AttributeError: 'AsyncClient' object has no attribute 'status'``. So the first call through
    each handle enters it first; entering twice only sets the same methods again.
    """

    def __init__(self, handles: Mapping[str, Any]) -> None:
        self.connections = Connections(handles.__getitem__, handles.keys())
        self._entered: set[int] = set()

    async def _ready(self, client: Any) -> Any:
        """``client`` once its methods are set up: entered on its first call (see the class)."""
        if id(client) not in self._entered:
            enter = getattr(client, "__aenter__", None)
            if enter is not None:
                await enter()
            self._entered.add(id(client))
        return client.to_async

    async def _call(self, model: str, method: str, *args: Any, idempotent: bool = True) -> Any:
        """One call of ``method``; an idempotent one that met a stale connection goes once more (STALE_CONNECTION)."""
        with self.connections.calling(model, method) as client:
            call = getattr(await self._ready(client), method)
            try:
                return await call(*args)
            except STALE_CONNECTION as exc:
                if not idempotent:
                    raise
                log.info(
                    "stale connection, calling again", extra={"model": model, "method": method, "error": repr(exc)}
                )
                return await call(*args)

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return outcomes(await self._call(model, "infer", items))

    async def status(self, model: str) -> dict[str, Any]:
        return dict(await self._call(model, "status"))

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return search_outcomes(await self._call(EMBEDDER, "search", items))

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        # Not repeated: a call cut off after the service read it may have added the image already.
        return gallery_added(await self._call(EMBEDDER, "gallery_add", item, metadata, idempotent=False))

    async def gallery_remove(self, item_id: str) -> bool:
        # Removing an id twice leaves the gallery as removing it once (the second answer may say it was not there).
        return bool(await self._call(EMBEDDER, "gallery_remove", item_id))

    async def gallery_size(self) -> int:
        return int(await self._call(EMBEDDER, "gallery_size"))
