"""Tiers from configuration: rate, burst, daily quota, input limits and the routes each may call."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, TypeAdapter


class UnknownTier(KeyError):
    """A key names a tier the configuration does not have."""


class Tier(BaseModel):
    """One tier's limits."""

    name: str = ""
    rps: float = Field(gt=0)
    burst: int = Field(ge=1)
    daily_quota: int | None = Field(default=None, gt=0)
    max_batch: int = Field(gt=0)
    max_image_bytes: int = Field(gt=0)
    routes: list[str] = Field(min_length=1)  # fnmatch globs over the path, e.g. "/api/v1/*"

    def allows(self, path: str) -> bool:
        """Whether a request to ``path`` (query string ignored) is allowed on this tier."""
        path = path.split("?", 1)[0]
        return any(fnmatchcase(path, pattern) for pattern in self.routes)


_TIERS = TypeAdapter(dict[str, Tier])


class Tiers:
    """The configured tiers by name."""

    def __init__(self, tiers: dict[str, Tier]) -> None:
        self._tiers = {name: tier.model_copy(update={"name": name}) for name, tier in tiers.items()}

    @classmethod
    def from_file(cls, path: Path) -> Tiers:
        """Read and validate a tiers YAML file (see gateway/tiers.yaml)."""
        return cls(_TIERS.validate_python(yaml.safe_load(path.read_text())))

    @property
    def names(self) -> list[str]:
        return list(self._tiers)

    def get(self, name: str) -> Tier:
        """The tier called ``name``.

        Raises:
            UnknownTier: No tier has that name.
        """
        try:
            return self._tiers[name]
        except KeyError:
            raise UnknownTier(name) from None
