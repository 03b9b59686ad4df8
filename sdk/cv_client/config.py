"""Where the client's settings come from: arguments first, then ``CV_API_URL`` and ``CV_API_KEY``.

This is the only module of the SDK that reads the environment.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

DEFAULT_URL = "http://127.0.0.1:3000"
API_PREFIX = "/api/v1"
RETRY_STATUSES = frozenset({429, 503})


def resolve_base_url(base_url: str | None) -> str:
    """The API root (``http://host:port/api/v1``) from the argument, ``CV_API_URL`` or the default.

    Either the server root or the ``/api/v1`` root may be given.
    """
    url = (base_url or os.environ.get("CV_API_URL") or DEFAULT_URL).rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def resolve_api_key(api_key: str | None) -> str | None:
    """The API key from the argument or ``CV_API_KEY``; None sends no credentials (a server without the edge)."""
    return api_key or os.environ.get("CV_API_KEY") or None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429 and 503 answers: exponential backoff with jitter, or the server's ``Retry-After``.

    Attributes:
        max_retries: Retries after the first attempt; 0 never retries.
        backoff: The first wait when the server gives no ``Retry-After``; doubled on each retry.
        max_backoff: The longest single wait.
        max_total_wait: Give up rather than wait past this many seconds in all.
        statuses: The statuses retried.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_total_wait: float = 60.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def delay(self, *, retry: int, retry_after: float | None, waited: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None:
            wait = min(retry_after, self.max_backoff)
        else:
            wait = min(self.backoff * 2**retry, self.max_backoff) * random.uniform(0.8, 1.0)
        if waited + wait > self.max_total_wait:
            return None
        return wait
