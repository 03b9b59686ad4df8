"""The gateway's refusals, in the service-wide problem+json hierarchy (kernel/errors.py)."""

from __future__ import annotations

from kernel.errors import ServiceError


class Unauthenticated(ServiceError):
    """No API key, or one the gateway does not know."""

    status_code = 401
    type_slug = "unauthenticated"
    title = "Missing or unknown API key"


class Forbidden(ServiceError):
    """A revoked key, or a route the key's tier does not allow."""

    status_code = 403
    type_slug = "forbidden"
    title = "Forbidden"


class RateLimited(ServiceError):
    status_code = 429
    type_slug = "rate-limited"
    title = "Too many requests"


class LimiterUnavailable(ServiceError):
    """Redis is unreachable and the gateway fails closed."""

    status_code = 503
    type_slug = "rate-limiter-unavailable"
    title = "Rate limiter unavailable"
