"""The async side of a blocking model client: each call in Starlette's threadpool, off the event loop."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from services.clients.base import ModelClient
from services.index.search import SearchItem, SearchOutcome
from services.models.worker import InferenceItem, Outcome


class ThreadedClient:
    """An :class:`~services.clients.base.AsyncModelClient` over a blocking one (the in-process models)."""

    def __init__(self, inner: ModelClient) -> None:
        self.inner = inner

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return await run_in_threadpool(self.inner.infer, model, items)

    async def status(self, model: str) -> dict[str, Any]:
        return await run_in_threadpool(self.inner.status, model)

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return await run_in_threadpool(self.inner.search, items)

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return await run_in_threadpool(self.inner.gallery_add, item, metadata)

    async def gallery_remove(self, item_id: str) -> bool:
        return await run_in_threadpool(self.inner.gallery_remove, item_id)

    async def gallery_size(self) -> int:
        return await run_in_threadpool(self.inner.gallery_size)
