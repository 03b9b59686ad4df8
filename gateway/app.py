"""The gateway's HTTP app: ``GET /auth`` for Traefik's ForwardAuth, and ``GET /health``.

Traefik sends every client request's headers to ``/auth`` (with ``X-Forwarded-Uri`` and
``X-Forwarded-Method``); a 2xx lets the request through with the headers named in
``authResponseHeaders`` (identity, tier limits, request id, rate-limit state), anything else is
returned to the client as is. :class:`Gateway` is the policy; gateway/inprocess.py runs it inside the
api in local mode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.config import GatewaySettings
from gateway.errors import Forbidden, LimiterUnavailable, RateLimited, Unauthenticated
from gateway.keycache import CachedKeyStore, Invalidations, KeyCache
from gateway.keys import KeyStore
from gateway.limiter import Decision, MemoryLimiter, RedisLimiter
from gateway.metrics import DECISIONS, LIMITER_ERRORS, LIMITER_UP, render_metrics
from gateway.tiers import Tier, Tiers, UnknownTier
from kernel.db.tables import ApiKeyPublic
from kernel.errors import PROBLEM_CONTENT_TYPE, ServiceError, problem_from_error
from kernel.headers import GATEWAY_HEADERS, RATE_LIMIT_HEADERS
from kernel.logging import REQUEST_ID_HEADER, clean_request_id
from kernel.signing import SIGNATURE_HEADER, sign

logger = logging.getLogger("gateway")


class Keys(Protocol):
    def authenticate(self, key: str) -> ApiKeyPublic | None: ...


class Limiter(Protocol):
    def check(self, client_id: str, tier: Tier) -> Decision: ...

    def ping(self) -> bool: ...


def _api_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def _rate_headers(decision: Decision) -> dict[str, str]:
    headers = dict(
        zip(RATE_LIMIT_HEADERS, map(str, (decision.limit, decision.remaining, decision.reset_s)), strict=True)
    )
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, decision.retry_after_s))
    return headers


@dataclass(frozen=True)
class Verdict:
    """The gateway's answer to one request: 200 and the upstream headers, or a refusal with its problem body."""

    status: int
    headers: dict[str, str]
    problem: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        return self.problem is None

    def response(self) -> Response:
        """As an HTTP response (ForwardAuth's answer, or the in-process middleware's refusal)."""
        if self.problem is None:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(
            self.problem, status_code=self.status, headers=self.headers, media_type=PROBLEM_CONTENT_TYPE
        )


def _refusal(error: ServiceError, *, uri: str, request_id: str, headers: dict[str, str]) -> Verdict:
    body = problem_from_error(error, instance=uri, request_id=request_id)
    headers = {**headers, REQUEST_ID_HEADER: request_id}
    if error.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cv-api"'
    return Verdict(status=error.status_code, headers=headers, problem=body)


class Gateway:
    """Decides on one request: who it is, whether the tier allows the route, whether it is in limits.

    The same object answers Traefik's ForwardAuth (``/auth``) and, in local mode, runs inside the api
    process (gateway/inprocess.py): one policy, two ways in.
    """

    def __init__(
        self, *, keys: Keys, tiers: Tiers, limiter: Limiter, fail_open: bool, signing_secret: str | None = None
    ) -> None:
        self.keys = keys
        self.tiers = tiers
        self.limiter = limiter
        self.fail_open = fail_open
        self.signing_secret = signing_secret

    def decide(self, headers: Mapping[str, str], uri: str) -> Verdict:
        """The verdict on a request to ``uri`` (path and query) with ``headers`` (lower-case names)."""
        request_id = clean_request_id(headers.get("x-request-id"))  # the api's rule: it keeps what the gateway kept
        try:
            tier, client_id, decision = self._decide(headers, uri)
        except ServiceError as error:
            DECISIONS.labels(error.extra.pop("tier", "none"), error.type_slug).inc()
            extra = error.extra.pop("headers", {})
            logger.info("refused", extra={"request_id": request_id, "uri": uri, "problem": error.type_slug})
            return _refusal(error, uri=uri, request_id=request_id, headers=extra)
        DECISIONS.labels(tier.name, "allowed").inc()
        logger.debug(
            "admitted",
            extra={
                "request_id": request_id,
                "client_id": client_id,
                "tier": tier.name,
                "remaining": decision.remaining,
                "decided_at_us": decision.decided_at_us,  # the limiter's clock (Redis TIME): when it took effect
            },
        )
        # Header names are case-insensitive (and lower-case on the wire): services/config.py names them once.
        upstream = (client_id, tier.name, str(tier.max_batch), str(tier.max_image_bytes))
        identity = dict(zip(GATEWAY_HEADERS, upstream, strict=True))
        forwarded = {**_rate_headers(decision), **identity, REQUEST_ID_HEADER: request_id}
        if self.signing_secret:  # Traefik says which method; the in-process middleware passes its own
            method = headers.get("x-forwarded-method", "GET")
            forwarded[SIGNATURE_HEADER] = sign(
                self.signing_secret, method=method, uri=uri, request_id=request_id, headers=identity
            )
        return Verdict(status=200, headers=forwarded)

    def answers_from_memory(self, headers: Mapping[str, str]) -> bool:
        """Whether the key in ``headers`` is in the key cache: deciding then reads no database, only Redis once."""
        key = _api_key(headers)
        return key is not None and isinstance(self.keys, CachedKeyStore) and self.keys.holds(key)

    def authorize(self, request: Request) -> Response:
        """ForwardAuth: Traefik sends the client's headers and the original URI as ``X-Forwarded-Uri``."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return self.decide(headers, request.headers.get("x-forwarded-uri") or "/").response()

    def _decide(self, headers: Mapping[str, str], uri: str) -> tuple[Tier, str, Decision]:
        key = _api_key(headers)
        if key is None:
            raise Unauthenticated("Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        record = self.keys.authenticate(key)
        if record is None:
            raise Unauthenticated("Unknown API key.")
        if record.revoked_at is not None:
            raise Forbidden("This API key has been revoked.")
        try:
            tier = self.tiers.get(record.tier)
        except UnknownTier:
            raise Forbidden("This API key's tier is not configured.") from None
        if not tier.allows(uri):
            raise Forbidden(f"The {tier.name} tier does not allow this route.", tier=tier.name)
        decision = self._limit(record.prefix, tier)
        if not decision.allowed:
            raise RateLimited("Rate limit or daily quota exceeded.", headers=_rate_headers(decision), tier=tier.name)
        return tier, record.prefix, decision

    def _limit(self, client_id: str, tier: Tier) -> Decision:
        backend = getattr(self.limiter, "backend", "redis")
        try:
            decision = self.limiter.check(client_id, tier)
        except redis.RedisError:
            LIMITER_UP.labels(backend).set(0)
            LIMITER_ERRORS.labels("open" if self.fail_open else "closed").inc()
            if not self.fail_open:
                logger.warning("redis unreachable: failing closed")
                raise LimiterUnavailable(
                    "Rate limiting is unavailable; try again shortly.", headers={"Retry-After": "1"}, tier=tier.name
                ) from None
            logger.warning("redis unreachable: failing open")
            return Decision(allowed=True, limit=tier.burst, remaining=tier.burst, reset_s=0, retry_after_s=0)
        LIMITER_UP.labels(backend).set(1)
        return decision

    def health(self) -> tuple[int, dict[str, Any]]:
        """Whether the limiter's store answers, and what happens to requests when it does not."""
        backend = getattr(self.limiter, "backend", "redis")
        redis_ok = self.limiter.ping()
        LIMITER_UP.labels(backend).set(1 if redis_ok else 0)
        status = "ok" if redis_ok else ("degraded" if self.fail_open else "unavailable")
        body = {"status": status, "limiter": backend, "fail_mode": "open" if self.fail_open else "closed"}
        if backend == "redis":
            body["redis"] = "ok" if redis_ok else "down"
        if isinstance(self.keys, CachedKeyStore):
            body["key_cache"] = "live" if self.keys.cache.live else "off"
        return (200 if redis_ok or self.fail_open else 503), body


def build_app(gateway: Gateway, *, inline: bool = True) -> FastAPI:
    """The FastAPI app around a :class:`Gateway`.

    ``inline``: a request whose key is cached is decided on the event loop (one Redis round trip, bounded by
    ``CV_GATEWAY_REDIS_TIMEOUT_S``), sparing the hop to a worker thread; a miss reads the database in a thread.
    """
    app = FastAPI(title="cv-api gateway", openapi_url=None)

    @app.get("/auth")
    async def auth(request: Request) -> Response:
        """ForwardAuth decision for one client request."""
        if inline and gateway.answers_from_memory(request.headers):
            return gateway.authorize(request)
        return await run_in_threadpool(gateway.authorize, request)

    @app.get("/health")
    def health() -> JSONResponse:
        """Redis reachability and the fail mode."""
        status, body = gateway.health()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus exposition of this process (the limiter's store is pinged first, so its gauge is current)."""
        gateway.health()
        body, content_type = render_metrics()
        return Response(content=body, media_type=content_type)

    return app


def build_keys(settings: GatewaySettings) -> Keys:
    """The key store; with Redis and ``key_cache_entries`` > 0, cached and subscribed to key changes (ADR 0013)."""
    from kernel.db.session import create_db_engine

    store = KeyStore(
        create_db_engine(settings.sqlalchemy_url), hash_key=settings.key_hash_secret.get_secret_value().encode()
    )
    if not settings.redis_url or settings.key_cache_entries == 0:
        return store
    cache = KeyCache(
        max_entries=settings.key_cache_entries,
        ttl_s=settings.key_cache_ttl_s,
        negative_ttl_s=settings.key_cache_negative_ttl_s,
    )
    # Its own connection, without the limiter's socket timeout: it waits for messages (health checks find a dead one).
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=settings.redis_timeout_s, health_check_interval=5
    )
    return CachedKeyStore(store, cache, Invalidations(client, settings.key_channel, cache).start())


def build_gateway(settings: GatewaySettings) -> Gateway:
    """The key store, tiers and Redis limiter from settings."""
    return Gateway(
        keys=build_keys(settings),
        tiers=Tiers.from_file(settings.tiers_file),
        limiter=(
            RedisLimiter.from_url(settings.redis_url, timeout_s=settings.redis_timeout_s, prefix=settings.redis_prefix)
            if settings.redis_url
            else MemoryLimiter()
        ),
        fail_open=settings.fail_open,
        signing_secret=settings.signing_secret.get_secret_value() if settings.signing_secret else None,
    )


def create_app(settings: GatewaySettings) -> FastAPI:
    """Composition root of the auth service."""
    return build_app(build_gateway(settings), inline=settings.auth_inline)
