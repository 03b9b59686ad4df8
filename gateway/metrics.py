"""Every Prometheus metric of the auth service, defined in one place (services/metrics.py holds the api's).

The auth service is one process (uvicorn), so ``GET /metrics`` renders this process' registry. In local mode
the same :class:`~gateway.app.Gateway` runs inside the api (gateway/inprocess.py) and these metrics appear in
the api's ``/api/v1/metrics``. Labels are tier names and decision kinds: bounded sets, never keys or paths.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

# Decisions: ``allowed``, or the problem type of the refusal (unauthenticated, forbidden, rate-limited,
# rate-limiter-unavailable). Tier ``none``: refused before a tier was known (no key, unknown or revoked key).
DECISIONS = Counter(
    "cv_gateway_decisions_total",
    "ForwardAuth decisions by tier and outcome (allowed or the refusal's problem type).",
    ["tier", "decision"],
)
LIMITER_UP = Gauge(
    "cv_gateway_limiter_up",
    "1 while the rate limiter's store (Redis) answers, 0 while it does not (fail open or closed).",
    ["backend"],
)
LIMITER_ERRORS = Counter(
    "cv_gateway_limiter_errors_total",
    "Rate-limit checks that failed because the store was unreachable, by what the gateway did (open, closed).",
    ["fail_mode"],
)

KEY_CACHE = Counter(
    "cv_gateway_key_cache_total",
    "Key lookups by the auth service's cache: hit, or miss (read from the database).",
    ["result"],
)
KEY_CACHE_LIVE = Gauge(
    "cv_gateway_key_cache_live",
    "1 while the key cache serves (its invalidation channel is subscribed), 0 while every lookup reads the database.",
)
KEY_INVALIDATIONS = Counter(
    "cv_gateway_key_invalidations_total",
    "Key changes (revoke, tier, create) received on the invalidation channel.",
)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text of this process."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
