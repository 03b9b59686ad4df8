"""The request context: who is calling and since when, set by middleware and only read by the rest.

``RequestIdMiddleware`` binds it for every request (the request id and the start time);
``GatewayCallerMiddleware`` adds the caller the gateway vouched for. Routes and the inference log
read it; nothing else writes it.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field, replace

from kernel.logging import get_request_id


@dataclass(frozen=True)
class RequestContext:
    """What is known of a request before any route runs."""

    request_id: str | None
    started: float = field(default_factory=time.perf_counter)  # time.perf_counter() when it arrived
    client_id: str | None = None  # from the gateway's headers, when they are trusted
    tier: str | None = None

    def caller(self) -> dict[str, str]:
        """Who called, as the gateway said (for log lines): empty without a trusted gateway."""
        return {k: v for k, v in (("client_id", self.client_id), ("tier", self.tier)) if v}


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("request_context", default=None)


def current_context() -> RequestContext:
    """The context of the request being handled (a fresh one outside a request)."""
    context = _context.get()
    return context if context is not None else RequestContext(request_id=get_request_id())


def bind_context(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    """Set the context of a new request (the outermost middleware; it resets the token when the request ends)."""
    return _context.set(context)


def reset_context(token: contextvars.Token[RequestContext | None]) -> None:
    _context.reset(token)


def add_caller(client_id: str | None, tier: str | None) -> None:
    """Add the gateway's caller to the bound context for the rest of the request.

    Not reset here: the middleware outside this one (the access log) reads the caller once the response
    has gone, and the outermost middleware's reset ends the whole context.
    """
    _context.set(replace(current_context(), client_id=client_id, tier=tier))
