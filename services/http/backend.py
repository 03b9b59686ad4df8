"""How the public routes reach the models: over ``bentoml.depends`` or in process.

:class:`RemoteBackend` is what the api service uses under ``bentoml serve``.
:class:`LocalBackend` runs the same workers in this process; the in-process HTTP tests
and the gallery command use it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from kernel.errors import ModelUnavailable, ServiceError, error_from_dict
from services.config import ServingSettings
from services.index.gallery import GalleryIndex
from services.index.search import SearchEngine, SearchItem, SearchOutcome
from services.models.worker import InferenceItem, ModelWorker, Outcome, build_pool

log = logging.getLogger(__name__)

MODEL_NAMES = ("classifier", "detector", "embedder")


class Backend(Protocol):
    """What the routes need from the model side."""

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]: ...
    async def status(self, model: str) -> dict[str, Any]: ...
    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]: ...
    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]: ...
    async def gallery_remove(self, item_id: str) -> bool: ...
    async def gallery_size(self) -> int: ...


class LocalBackend:
    """Every model in this process."""

    def __init__(self, workers: dict[str, ModelWorker], engine: SearchEngine) -> None:
        self.workers = workers
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> LocalBackend:
        workers = {name: ModelWorker(build_pool(name, settings)) for name in MODEL_NAMES}
        index = GalleryIndex(settings.gallery_path, settings.gallery_dim)
        return cls(workers, SearchEngine(workers["embedder"], index))

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return await run_in_threadpool(self.workers[model].run, items)

    async def status(self, model: str) -> dict[str, Any]:
        return self.workers[model].pool.status()

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return await run_in_threadpool(self.engine.search, items)

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return await run_in_threadpool(self.engine.add, item, metadata)

    async def gallery_remove(self, item_id: str) -> bool:
        return await run_in_threadpool(self.engine.remove, item_id)

    async def gallery_size(self) -> int:
        return self.engine.size()


class RemoteBackend:
    """The model services, reached through their ``bentoml.depends`` clients."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients

    async def _call(self, model: str, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.clients[model].to_async, method)(*args)
        except ServiceError:
            raise
        except Exception as exc:
            log.error("model service call failed", extra={"model": model, "method": method, "error": repr(exc)})
            raise ModelUnavailable(f"the {model} service is unreachable or failed") from exc

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return [Outcome.model_validate(o) for o in await self._call(model, "infer", items)]

    async def status(self, model: str) -> dict[str, Any]:
        return dict(await self._call(model, "status"))

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return [SearchOutcome.model_validate(o) for o in await self._call("embedder", "search", items)]

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        result = dict(await self._call("embedder", "gallery_add", item, metadata))
        if "error" in result:
            raise error_from_dict(result["error"])
        return result

    async def gallery_remove(self, item_id: str) -> bool:
        return bool(await self._call("embedder", "gallery_remove", item_id))

    async def gallery_size(self) -> int:
        return int(await self._call("embedder", "gallery_size"))
