"""The model client contract, and the one error mapping of every call that crosses a process boundary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from kernel.errors import ModelUnavailable, ServiceError, error_from_dict
from services.index.search import SearchItem, SearchOutcome
from services.models.worker import InferenceItem, Outcome

log = logging.getLogger(__name__)


class ModelClient(Protocol):
    """What the api and the job workers need from the model side (blocking calls)."""

    def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]: ...
    def status(self, model: str) -> dict[str, Any]: ...
    def search(self, items: list[SearchItem]) -> list[SearchOutcome]: ...
    def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]: ...
    def gallery_remove(self, item_id: str) -> bool: ...
    def gallery_size(self) -> int: ...


class AsyncModelClient(Protocol):
    """The same contract for the api's routes, which run on the event loop."""

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]: ...
    async def status(self, model: str) -> dict[str, Any]: ...
    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]: ...
    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]: ...
    async def gallery_remove(self, item_id: str) -> bool: ...
    async def gallery_size(self) -> int: ...


class AsyncClientWrapper:
    """An async model client around another, passing every call through; a wrapper overrides what it adds to.

    The result cache (``services/http/caching.py``) and the inference-log recording (``services/http/recording.py``)
    are such wrappers.
    """

    def __init__(self, inner: AsyncModelClient) -> None:
        self.inner = inner

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        return await self.inner.infer(model, items)

    async def status(self, model: str) -> dict[str, Any]:
        return await self.inner.status(model)

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return await self.inner.search(items)

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.gallery_add(item, metadata)

    async def gallery_remove(self, item_id: str) -> bool:
        return await self.inner.gallery_remove(item_id)

    async def gallery_size(self) -> int:
        return await self.inner.gallery_size()


class Connections:
    """One client per model service, made on first use and dropped when a call through it fails.

    Args:
        connect: Makes the client of a model service (a ``bentoml.depends`` handle or a ``SyncHTTPClient``).
        models: The models that have a service to connect to.
    """

    def __init__(self, connect: Callable[[str], Any], models: Collection[str]) -> None:
        self.connect = connect
        self.models = frozenset(models)
        self._clients: dict[str, Any] = {}

    @contextmanager
    def calling(self, model: str, method: str) -> Iterator[Any]:
        """The client of ``model``'s service, for one call: the single place a failed call is mapped.

        A ``ServiceError`` (the service's own verdict) passes through. Anything else (connection refused,
        timeouts, a 503 "overloaded", a broken client) is logged and raised as ``ModelUnavailable``, which
        the api answers with 503 and a job worker retries; the client is dropped so the next call gets a
        fresh one.
        """
        try:
            client = self._clients.get(model)
            if client is None:
                client = self._clients[model] = self.connect(model)
            yield client
        except ServiceError:
            raise
        except Exception as exc:
            log.warning("model service call failed", extra={"model": model, "method": method, "error": repr(exc)})
            self._clients.pop(model, None)
            raise ModelUnavailable(f"the {model} service is unreachable or failed") from exc


def outcomes(answers: Any) -> list[Outcome]:
    """A model service's ``infer`` answer (dicts or outcomes) as outcomes."""
    return [Outcome.model_validate(a) for a in answers]


def search_outcomes(answers: Any) -> list[SearchOutcome]:
    """The embedder service's ``search`` answer as search outcomes."""
    return [SearchOutcome.model_validate(a) for a in answers]


def gallery_added(answer: Any) -> dict[str, Any]:
    """The embedder service's ``gallery_add`` answer, or the error it carries raised."""
    result = dict(answer)
    if "error" in result:
        raise error_from_dict(result["error"])
    return result
