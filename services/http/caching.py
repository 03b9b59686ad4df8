"""The result cache around the model call: a wrapper of the async model client (services/clients/).

A cached answer is keyed by the model, the *identity of the version that would answer*, the
parameters and the image's SHA-256. The identity is ``version@digest``, where the digest
covers the version's spec (file checksums, preprocessing, output): a re-imported version with
new weights gets new keys even under the same name. Without a pinned version, the identity is
that of the pool's current default, learnt from the model service's status and trusted for
``version_ttl_s`` at most; an answer is stored only when that very version gave it (a fallback
answer is never cached), and an answer from another version makes the api ask again at once.
So a changed default version stops old answers within ``version_ttl_s`` (0: ask every time).
Search is not cached: its answer depends on the gallery, which changes with every add.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.cache import Cache
from services.clients.base import AsyncClientWrapper, AsyncModelClient
from services.metrics import CACHE_HITS, CACHE_MISSES
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome

log = logging.getLogger(__name__)


def version_digest(metadata: dict[str, Any]) -> str:
    """12 hex characters over a version's spec, less what does not change its answers (the stage label)."""
    relevant = {k: v for k, v in metadata.items() if k != "stage"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_key(*, prefix: str, model: str, identity: str, params: dict[str, Any], image_sha256: str) -> str:
    """``<prefix><model>:<version@digest>:<params digest>:<image sha256>``."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    params_digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"{prefix}{model}:{identity}:{params_digest}:{image_sha256}"


@dataclass(frozen=True)
class _Planned:
    key: str
    version: str  # the version whose answer may be stored under key


@dataclass
class _Known:
    default: str | None  # identity of the default version
    identities: dict[str, str]  # version -> version@digest
    until: float


class VersionResolver:
    """Which version identity answers a request, from each model's status, cached for ``ttl_s``."""

    def __init__(self, client: AsyncModelClient, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._clock = clock
        self._known: dict[str, _Known] = {}

    async def identity(self, model: str, version: str | None) -> str | None:
        """``version@digest`` of the pinned version or of the current default; None when unknown."""
        known = self._known.get(model)
        if known is None or self._clock() >= known.until:
            known = await self._refresh(model)
        if known is None:
            return None
        return known.default if version is None else known.identities.get(version)

    def forget(self, model: str) -> None:
        """Ask the model service again on the next request."""
        self._known.pop(model, None)

    async def _refresh(self, model: str) -> _Known | None:
        try:
            status = await self.client.status(model)
        except Exception as exc:  # the model call itself will report the outage; skip the cache meanwhile
            log.warning("model status unavailable; cache bypassed", extra={"model": model, "error": repr(exc)})
            self._known.pop(model, None)
            return None
        identities = {
            str(v["version"]): f"{v['version']}@{version_digest(v.get('metadata') or {})}"
            for v in status.get("versions", [])
        }
        default = status.get("default_version")
        known = _Known(identities.get(default) if default else None, identities, self._clock() + self.ttl_s)
        self._known[model] = known
        return known


class CachingClient(AsyncClientWrapper):
    """Answers ``infer`` from the cache when it can and stores what the model answers."""

    def __init__(
        self,
        inner: AsyncModelClient,
        cache: Cache,
        *,
        ttl_s: int,
        prefix: str = "cv:result:",
        version_ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.cache = cache
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.versions = VersionResolver(inner, version_ttl_s, clock)

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        started = time.perf_counter()
        plan = await self._plan(model, items)
        found = await self.cache.get_many([p.key for p in plan if p])
        lookup_ms = (time.perf_counter() - started) * 1000
        outcomes: dict[int, Outcome] = {}
        for i, entry in enumerate(plan):
            if entry is not None and entry.key in found:
                cached = Prediction.model_validate_json(found[entry.key]).model_copy(
                    update={"timings_ms": {"cache": lookup_ms}}
                )
                outcomes[i] = Outcome(prediction=cached, cached=True)
        misses = [i for i in range(len(items)) if i not in outcomes]
        if any(plan):
            CACHE_HITS.labels(model).inc(len(outcomes))
            CACHE_MISSES.labels(model).inc(sum(1 for i in misses if plan[i]))
        if misses:
            answered = await self.inner.infer(model, [items[i] for i in misses])
            outcomes.update(zip(misses, answered, strict=True))
            await self._store(model, items, plan, {i: outcomes[i] for i in misses})
        return [outcomes[i] for i in range(len(items))]

    async def _store(
        self, model: str, items: list[InferenceItem], plan: list[_Planned | None], answered: dict[int, Outcome]
    ) -> None:
        """Cache answers given by the version the key names; anything else is not cached."""
        values: dict[str, bytes] = {}
        for i, outcome in answered.items():
            entry = plan[i]
            if entry is None or outcome.prediction is None:
                continue
            if outcome.prediction.version == entry.version:
                values[entry.key] = outcome.prediction.model_copy(update={"timings_ms": {}}).model_dump_json().encode()
            elif items[i].version is None:
                self.versions.forget(model)  # another version answered: a fallback, or a new default
        await self.cache.set_many(values, self.ttl_s)

    async def _plan(self, model: str, items: list[InferenceItem]) -> list[_Planned | None]:
        """Each item's key and the version expected to answer it; None when it cannot be cached."""
        identities: dict[str | None, str | None] = {}
        plan: list[_Planned | None] = []
        for item in items:
            if item.image_sha256 is not None and item.version not in identities:
                identities[item.version] = await self.versions.identity(model, item.version)
            identity = identities.get(item.version) if item.image_sha256 is not None else None
            if item.image_sha256 is None or identity is None:
                plan.append(None)
                continue
            key = cache_key(
                prefix=self.prefix, model=model, identity=identity, params=item.params, image_sha256=item.image_sha256
            )
            plan.append(_Planned(key, identity.rsplit("@", 1)[0]))
        return plan
