"""The gateway's refusals, in the service-wide problem+json hierarchy (kernel/errors.py)."""

from __future__ import annotations

from kernel.errors import ServiceError


class Unauthenticated(ServiceError):
    """No API key, or one the gateway does not know."""

    status_code = 401
    type_slug = "unauthenticated"
    title = "Missing or unknown API key"
    remedy = "Send a valid API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`."


class Forbidden(ServiceError):
    """A revoked key, or a route the key's tier does not allow."""

    status_code = 403
    type_slug = "forbidden"
    title = "Forbidden"
    remedy = "The key is revoked or its tier does not allow this route; ask for a key of another tier."


class RateLimited(ServiceError):
    status_code = 429
    type_slug = "rate-limited"
    title = "Too many requests"
    remedy = "Wait for the Retry-After seconds; the RateLimit-* headers say what the tier allows."


class LimiterUnavailable(ServiceError):
    """Redis is unreachable and the gateway fails closed."""

    status_code = 503
    type_slug = "rate-limiter-unavailable"
    title = "Rate limiter unavailable"
    remedy = "Retry after the Retry-After interval; the gateway refuses rather than run without limits."


# Every refusal the gateway answers, for the error catalogue (docs/api.md) and the OpenAPI spec.
GATEWAY_ERRORS: tuple[type[ServiceError], ...] = (Unauthenticated, Forbidden, RateLimited, LimiterUnavailable)
