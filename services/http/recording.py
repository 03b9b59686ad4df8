"""The inference log of the public routes: one record per image, from the model client's answers.

Three parts, none of them in a route:

- :class:`RecordingClient` wraps the routes' model client (outside the result cache, whose ``cached``
  flag it keeps) and notes each item the model answers or fails in the request's :class:`ItemLedger`.
- ``read_image`` (services/http/deps.py), where every upload is validated, notes each image it reads or
  refuses, in upload order: so each record has the image's facts and its position, and an image refused
  before any model call (an item of an inline ``/batch``) still has its own record.
- :class:`InferenceLogMiddleware` opens the ledger, and once the response has gone turns it into records
  for the log writer: one per image, or one for the request when it failed before any image was read.
  That is also when each answered image's drift features are computed (services/drift/features.py: image
  statistics on a strided thumbnail, the top label and confidence, the prediction's sketch), off the
  response's path; cached answers have them too (they are real traffic).
  A ``/batch`` answered 202 became a job: the worker logs its images, one row per item.

Who called and when the request started come from the request context (services/http/context.py).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.db.tables import InferenceLogCreate
from kernel.errors import ServiceError, error_from_dict
from services.clients.base import AsyncClientWrapper
from services.db.records import drift_features, image_columns, summarize
from services.http.context import RequestContext, current_context
from services.http.paths import API_PREFIX, route_template
from services.imaging import DecodedImage
from services.index.search import SearchItem, SearchOutcome
from services.models.catalogue import CATALOGUE
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from services.shadow.mirror import ShadowCopy, ShadowItem

log = logging.getLogger("services.http")

BATCH_ROUTE = f"{API_PREFIX}/batch"
# Route templates whose requests are logged, and the model each one runs (the catalogue's routes).
# /batch runs the model its ``task`` names, which the route attributes (ItemLedger.model).
RECORDED_ROUTES: dict[str, str | None] = {
    **{f"{API_PREFIX}{entry.route}": entry.name for entry in CATALOGUE},
    BATCH_ROUTE: None,
}


@dataclass
class ItemRecord:
    """What became of one image of the request."""

    image: DecodedImage | None = None
    prediction: Prediction | None = None
    pixels: np.ndarray | None = None  # what the model answered on (the features of the drift monitor come from it)
    summary: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    status: int | None = None  # None: the response's status
    error_type: str | None = None
    call: InferenceItem | None = None  # what the model was asked (the shadow mirror asks its versions the same)

    def features(self) -> dict[str, Any] | None:
        """The drift monitor's features of an answered image (None otherwise, or should they fail)."""
        if self.prediction is None or self.pixels is None:
            return None
        size = (self.image.width, self.image.height) if self.image is not None else None  # the upload's, not reduced
        return drift_features(self.pixels, self.prediction, size)


@dataclass
class ItemLedger:
    """What one request did to each of its images, in upload order."""

    model: str | None = None  # the model a /batch request runs (its task's)
    experiment: str | None = None  # the A/B experiment and arm that chose the version (attribute_experiment)
    arm: str | None = None
    items: list[ItemRecord] = field(default_factory=list)

    def image_read(self, image: DecodedImage) -> None:
        self.items.append(ItemRecord(image=image))

    def image_refused(self, error: ServiceError) -> None:
        self.items.append(ItemRecord(status=error.status_code, error_type=error.type_slug))

    def answered(
        self,
        pixels: np.ndarray,
        prediction: Prediction,
        summary: dict[str, Any],
        *,
        cached: bool,
        call: InferenceItem | None = None,
    ) -> None:
        item = self._item(pixels)
        item.prediction, item.summary, item.cached, item.status, item.call = prediction, summary, cached, 200, call
        item.pixels = pixels

    def failed(self, pixels: np.ndarray, error: ServiceError) -> None:
        item = self._item(pixels)
        item.status, item.error_type = error.status_code, error.type_slug

    def _item(self, pixels: np.ndarray) -> ItemRecord:
        # The model client's item carries the very pixels read_image decoded (no copy is made on the way).
        for item in self.items:
            if item.image is not None and item.image.pixels is pixels:
                return item
        item = ItemRecord()
        self.items.append(item)
        return item

    def records(
        self, context: RequestContext, *, route: str, status: int, error_type: str | None, latency_ms: float
    ) -> list[InferenceLogCreate]:
        """One record per image (or one for the request), filled from the response where an image says nothing."""
        model = self.model or RECORDED_ROUTES.get(route)
        common: dict[str, Any] = {
            "request_id": context.request_id,
            "client_id": context.client_id,
            "tier": context.tier,
            "route": route,
            "latency_ms": round(latency_ms, 3),
            "experiment": self.experiment,
            "arm": self.arm,
        }
        records = []
        for index, item in enumerate(self.items or [ItemRecord()]):
            prediction = item.prediction
            own_status = item.status or status
            records.append(
                InferenceLogCreate(
                    **common,
                    item_index=index,
                    model=prediction.model if prediction else model,
                    version=prediction.version if prediction else None,
                    precision=prediction.precision if prediction else None,
                    status=own_status,
                    cached=item.cached,
                    error_type=item.error_type or (error_type if own_status >= 400 else None),
                    **image_columns(item.image),
                    **item.summary,
                    features=item.features(),
                )
            )
        return records

    def shadow_copy(self, context: RequestContext, *, route: str) -> ShadowCopy | None:
        """The images the production version answered, for the shadow mirror; None when there are none.

        A request that pinned a version is not mirrored (its answer is not production's to compare with), nor
        is an image the model did not answer. A cache hit is: the shadow runs, production does not run again.
        """
        items = [
            ShadowItem(index=index, image=item.image, params=dict(item.call.params), production=item.prediction)
            for index, item in enumerate(self.items)
            if item.prediction is not None
            and item.image is not None
            and item.call is not None
            and item.call.version is None
        ]
        if not items:
            return None
        return ShadowCopy(
            model=items[0].production.model,
            route=route,
            items=items,
            request_id=context.request_id,
            client_id=context.client_id,
            tier=context.tier,
        )


_ledger: contextvars.ContextVar[ItemLedger | None] = contextvars.ContextVar("item_ledger", default=None)


def current_ledger() -> ItemLedger:
    """The ledger of the request being handled (a detached one outside a logged request)."""
    ledger = _ledger.get()
    return ledger if ledger is not None else ItemLedger()


def bind_ledger(ledger: ItemLedger) -> contextvars.Token[ItemLedger | None]:
    """Open ``ledger`` for the request being handled (:class:`InferenceLogMiddleware`; tests)."""
    return _ledger.set(ledger)


def reset_ledger(token: contextvars.Token[ItemLedger | None]) -> None:
    _ledger.reset(token)


def attribute_model(model: str) -> None:
    """Say which model a ``/batch`` request runs, for its records that no model answered.

    One of the two things a route tells the inference log (with :func:`attribute_experiment`): the model comes
    from the ``task`` form field, which only the route has parsed, and the record of a batch refused before any
    image is read names it.
    """
    current_ledger().model = model


def attribute_experiment(experiment: str, arm: str) -> None:
    """Say which A/B experiment and arm chose the version the request runs, for each of its records.

    Only the route knows: it assigns the arm before the model runs, so a failed answer is the arm's too.
    """
    ledger = current_ledger()
    ledger.experiment, ledger.arm = experiment, arm


class RecordingClient(AsyncClientWrapper):
    """Notes each answer of the wrapped model client in the request's ledger (search and inference)."""

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        outcomes = await self.inner.infer(model, items)
        ledger = current_ledger()
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.prediction is not None:
                summary = summarize(outcome.prediction.result)
                ledger.answered(item.image, outcome.prediction, summary, cached=outcome.cached, call=item)
            else:
                ledger.failed(item.image, error_from_dict(outcome.error or {}))
        return outcomes

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        outcomes = await self.inner.search(items)
        ledger = current_ledger()
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.prediction is not None:
                summary = summarize({"results": outcome.hits})
                ledger.answered(item.image, outcome.prediction, summary, cached=False, call=item)
            else:
                ledger.failed(item.image, error_from_dict(outcome.error or {}))
        return outcomes


class Sink(Protocol):
    """Where records go (the data plane's log writer)."""

    def submit(self, records: list[InferenceLogCreate]) -> None: ...


class Mirror(Protocol):
    """Takes a copy of an answered request for the shadow versions (services/shadow/mirror.py), never waiting."""

    def offer(self, copy: ShadowCopy) -> bool: ...


class InferenceLogMiddleware:
    """Opens each request's ledger and, once the response has gone, hands its records to the log writer and a
    copy of its answered images to the shadow mirror."""

    def __init__(
        self, app: ASGIApp, sink: Callable[[], Sink | None], mirror: Callable[[], Mirror | None] | None = None
    ) -> None:
        self.app = app
        self.sink = sink
        self.mirror = mirror or (lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ledger = ItemLedger()
        token = bind_ledger(ledger)
        response: dict[str, Any] = {"status": 500, "problem": None}  # 500: an exception escaped the app

        async def note(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key == b"x-problem-type":
                        response["problem"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, note)
        finally:
            reset_ledger(token)
            self._hand_off(ledger, route_template(scope), response["status"], response["problem"])

    def _hand_off(self, ledger: ItemLedger, route: str, status: int, problem: str | None) -> None:
        """Queue the request's records with the log writer, and its copy with the shadow mirror: queue appends only."""
        if route not in RECORDED_ROUTES or (route == BATCH_ROUTE and status == 202):
            return  # not a logged route, or a batch that became a job (the worker logs each image)
        context = current_context()
        sink = self.sink()
        if sink is not None:
            latency_ms = (time.perf_counter() - context.started) * 1000
            try:
                records = ledger.records(context, route=route, status=status, error_type=problem, latency_ms=latency_ms)
                sink.submit(records)
            except Exception:  # a logging bug must not turn an answered request into an error
                log.exception("inference log record failed")
        self._mirror(ledger, context, route)

    def _mirror(self, ledger: ItemLedger, context: RequestContext, route: str) -> None:
        """Offer the shadow mirror a copy of the answered images: a queue append, or a counted drop."""
        try:
            mirror = self.mirror()
            copy = ledger.shadow_copy(context, route=route) if mirror is not None else None
            if mirror is not None and copy is not None:
                mirror.offer(copy)
        except Exception:  # shadow traffic must never change an answered request
            log.exception("shadow copy failed")
