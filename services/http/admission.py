"""Admission control of the inference routes: a bounded number in flight, a short wait, else 503 at once.

Past its capacity a server that accepts everything only makes every answer late (benchmarks/reports/overload.md:
at concurrency 256, p99 10 s). So each api process lets at most ``max_inflight`` inference requests run at once.
A request that finds them all busy joins a FIFO queue only if the wait it can expect there fits the queue timeout
(its place in the queue times the mean time a slot is held, over the slots); otherwise it is refused at once with
:class:`~kernel.errors.Overloaded` (503 problem+json, ``Retry-After``), before its body is read and before any
model sees it. A queued request that still has no slot at the timeout is refused the same way (``reason=timeout``).
An admitted request always runs to its answer: a slot is only ever handed from a finishing request to the next
one in the queue.

:class:`AdmissionMiddleware` guards POST /classify, /detect and /search by path (before FastAPI reads the form); an
inline POST /batch takes its slot in the route (its ``mode`` is a form field), with :meth:`AdmissionController.slot`.
Health, metrics, models, jobs and everything else are never refused.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.asgi import full_path
from kernel.errors import Overloaded
from services.http.middleware import _HttpOnly
from services.http.paths import API_PREFIX
from services.http.problems import problem_response
from services.metrics import ADMISSION_INFLIGHT, ADMISSION_LIMIT, ADMISSION_REFUSED, ADMISSION_WAIT, HTTP_ERRORS
from services.models.runtime import DEMAND

# Routes (under the prefix) the middleware guards: POST only. /batch guards its inline mode in the route.
GUARDED_PATHS = frozenset({"/classify", "/detect", "/search"})
_HOLD_SMOOTHING = 0.1  # weight of the newest sample in the moving average of a slot's hold time
_DECREASE = 0.9  # the limit's multiplicative decrease


class AdmissionController:
    """At most ``limit`` holders of a slot; a FIFO queue whose expected wait stays under ``queue_timeout_s``.

    The limit adapts to the capacity the process actually gets (AIMD on the time a slot is held): a request that
    held its slot longer than ``target_s`` cuts the limit by ``_DECREASE`` (at most once per mean hold time, so one
    slow burst counts once), a faster one adds ``1 / limit`` (about one slot per limit's worth of answers), between
    ``min_inflight`` and ``max_inflight``. ``target_s`` 0 keeps the limit at ``max_inflight``.

    Args:
        max_inflight: The most slots: requests of this process that may run at once.
        queue_timeout_s: The longest a request waits for a slot; 0 refuses whenever all slots are busy.
        retry_after_s: The least ``Retry-After`` a refusal carries.
        retry_after_max_s: The most: under sustained overload ``Retry-After`` grows until callers who honour it come
            back about as fast as requests are admitted (:meth:`retry_after`), so that refusals do not take the
            api's CPU from answers.
        target_s: The slot hold time the limit steers to; 0: a fixed limit.
        min_inflight: The fewest slots the limit may fall to.
        clock: Monotonic seconds (a fake one in tests).
    """

    def __init__(
        self,
        max_inflight: int,
        queue_timeout_s: float,
        retry_after_s: int = 1,
        retry_after_max_s: int = 1,
        *,
        target_s: float = 0.0,
        min_inflight: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_inflight = max_inflight
        self.min_inflight = min(min_inflight, max_inflight)
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self.retry_after_max_s = max(retry_after_s, retry_after_max_s)
        self._window = _Window(clock)
        self._retry_after = float(retry_after_s)
        self._tuned_at = self._window.start
        self.target_s = target_s
        self.clock = clock
        self.limit = float(max_inflight)
        self._decreased_at = float("-inf")
        self.inflight = 0
        self.hold_s: float | None = None  # moving average of how long a slot is held; None before the first
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def expected_wait_s(self) -> float:
        """The wait a request joining the queue now can expect: its place times the mean hold, over the slots.

        Before any slot has been released there is no estimate: up to ``max_inflight`` may queue.
        """
        place = self.queued + 1
        if self.hold_s is None:
            return 0.0 if place <= self.slots else float("inf")
        return place * self.hold_s / self.slots

    @property
    def slots(self) -> int:
        """The current limit, in whole slots."""
        return max(self.min_inflight, int(self.limit))

    async def acquire(self, route: str) -> None:
        """Take a slot, waiting in the queue when the expected wait allows; raise ``Overloaded`` otherwise."""
        if self.inflight < self.slots and not self.queued:
            self._take(0.0)
            return
        if self.queue_timeout_s <= 0 or self.expected_wait_s() > self.queue_timeout_s:
            raise self._refuse(route, "full")
        started = self.clock()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=self.queue_timeout_s)
        except asyncio.CancelledError:  # the client went away while queued
            self._leave(waiter)
            raise
        if not waiter.done():
            self._leave(waiter)
            raise self._refuse(route, "timeout")
        self._window.add(admitted=1)
        ADMISSION_WAIT.observe(self.clock() - started)  # the slot was handed over: inflight already counts it

    def release(self, held_s: float) -> None:
        """Give back a slot held ``held_s`` seconds: to the next one queued, else to the pool."""
        self.hold_s = held_s if self.hold_s is None else self.hold_s + _HOLD_SMOOTHING * (held_s - self.hold_s)
        self._adapt(held_s)
        if self.inflight > self.slots:  # the limit fell: this slot closes rather than pass on
            self._free()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: inflight is unchanged
                return
        self._free()

    def _adapt(self, held_s: float) -> None:
        if self.target_s <= 0:
            return
        now = self.clock()
        if held_s > self.target_s:
            if now - self._decreased_at >= (self.hold_s or 0.0):
                self.limit = max(float(self.min_inflight), self.limit * _DECREASE)
                self._decreased_at = now
        else:
            self.limit = min(float(self.max_inflight), self.limit + 1 / self.limit)
        ADMISSION_LIMIT.set(self.slots)

    def _free(self) -> None:
        self.inflight -= 1
        DEMAND.add(-1)
        ADMISSION_INFLIGHT.dec()

    @asynccontextmanager
    async def slot(self, route: str) -> AsyncIterator[None]:
        """Hold a slot for the block (``Overloaded`` when none can be had in time)."""
        await self.acquire(route)
        started = self.clock()
        try:
            yield
        finally:
            self.release(self.clock() - started)

    def retry_after(self) -> int:
        """Seconds a refused caller should wait.

        Once a second it is scaled by the square root of the last second's refusals per admission (at most halved):
        it settles where callers who honour it come back about as fast as requests are admitted, so refusals cost
        the api no more than answers do. After a quiet second it starts again from the least.
        """
        window = self._window
        if window.start != self._tuned_at:
            self._tuned_at = window.start
            admitted, refused = window.before
            if admitted + refused == 0:
                self._retry_after = float(self.retry_after_s)
            else:
                scale = max(0.5, math.sqrt(refused / max(admitted, 1)))
                self._retry_after = min(
                    float(self.retry_after_max_s), max(self.retry_after_s, self._retry_after * scale)
                )
        return math.ceil(self._retry_after)

    def _take(self, waited_s: float) -> None:
        self._window.add(admitted=1)
        self.inflight += 1
        DEMAND.add(1)  # the models' solo sessions run only while the process serves one request
        ADMISSION_INFLIGHT.inc()
        ADMISSION_WAIT.observe(waited_s)

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gives up; a slot handed to it just now goes on to the next one."""
        if waiter.done() and not waiter.cancelled():
            self.release(self.hold_s or 0.0)
            return
        waiter.cancel()
        self._waiters.remove(waiter)

    def _refuse(self, route: str, reason: str) -> Overloaded:
        self._window.add(refused=1)
        retry_after = self.retry_after()
        ADMISSION_REFUSED.labels(route, reason).inc()
        HTTP_ERRORS.labels(route, Overloaded.type_slug).inc()
        return Overloaded(
            f"{self.inflight} inference requests are running and the queue is full; retry after {retry_after} s",
            retry_after_s=retry_after,
        )


class _Window:
    """Admitted and refused requests in the current and the previous one-second window (``start``: the current's)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.start = clock()
        self.now = [0, 0]  # admitted, refused
        self.before = [0, 0]

    def add(self, admitted: int = 0, refused: int = 0) -> None:
        """Count requests in the current window (opening a new one each second)."""
        now = self.clock()
        if now - self.start >= 1.0:
            self.before = self.now if now - self.start < 2.0 else [0, 0]
            self.now, self.start = [0, 0], now
        self.now[0] += admitted
        self.now[1] += refused

    def counts(self) -> tuple[int, int]:
        """(admitted, refused) over the two windows."""
        return self.now[0] + self.before[0], self.now[1] + self.before[1]


_DRAIN_BYTES = 1 << 20


async def _drain(receive: Receive) -> None:
    """Read (and drop) up to 1 MiB of the refused request's body, so the connection stays usable: answering while
    the client still uploads made some clients see a reset instead of the 503."""
    seen = 0
    while seen <= _DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


@dataclass(frozen=True)
class _Refused:
    """Stands for the route a refused request never reached, in ``scope["route"]`` (``route_template`` reads it)."""

    path: str


class _GuardedRoutes(_HttpOnly):
    """Middleware that acts on POST requests to ``paths`` (under the prefix) only."""

    def __init__(self, app: ASGIApp, paths: frozenset[str] = GUARDED_PATHS) -> None:
        super().__init__(app)
        self.paths = paths

    def guarded(self, scope: Scope) -> str | None:
        """The request's path under the prefix when this middleware guards it, else None."""
        path = full_path(scope).removeprefix(API_PREFIX)
        return path if scope["method"] == "POST" and path in self.paths else None


class AdmissionMiddleware(_GuardedRoutes):
    """Guards POST requests to ``paths`` (under the prefix) with ``controller``, before the app runs.

    A refusal names its route in the scope, so the access log and the HTTP metrics label it by its template.
    """

    def __init__(self, app: ASGIApp, controller: AdmissionController, paths: frozenset[str] = GUARDED_PATHS) -> None:
        super().__init__(app, paths)
        self.controller = controller

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.guarded(scope)
        if path is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.controller.acquire(API_PREFIX + path)
        except Overloaded as refused:
            scope["route"] = _Refused(path)
            await _drain(receive)
            response = problem_response(refused, instance=full_path(scope))
            response.headers["x-problem-type"] = refused.type_slug
            await response(scope, receive, send)
            return
        started = self.controller.clock()
        try:
            await self.app(scope, receive, send)
        finally:
            self.controller.release(self.controller.clock() - started)


class DemandMiddleware(_GuardedRoutes):
    """Counts the inference requests in flight in DEMAND where admission control is off (where it is on, the
    controller counts the slots): the models' solo sessions and the inline decode must still see the load
    (docs/adr/0019-a-lone-request-takes-the-box.md)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.guarded(scope) is None:
            await self.app(scope, receive, send)
            return
        with DEMAND.serving():
            await self.app(scope, receive, send)
