"""Tier rules: route globs, the configured file, unknown tiers, invalid values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.tiers import Tiers, UnknownTier
from tests.unit.gateway.conftest import make_tier


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/classify", True),
        ("/api/v1/classify?version=v1", True),
        ("/api/v1/detect", False),
        ("/api/v2/classify", False),
        ("/metrics", False),
    ],
)
def test_tier_allows_only_matching_routes(path: str, allowed: bool) -> None:
    assert make_tier(routes=["/api/v1/classify"]).allows(path) is allowed


def test_wildcard_tier_allows_every_api_route() -> None:
    assert make_tier(routes=["/api/v1/*"]).allows("/api/v1/gallery/search")


def test_configured_tiers_file_loads() -> None:
    tiers = Tiers.from_file(GatewaySettings(_env_file=None).tiers_file)  # type: ignore[call-arg]
    assert tiers.names == ["free", "pro", "enterprise"]
    free, enterprise = tiers.get("free"), tiers.get("enterprise")
    assert free.name == "free" and free.rps < tiers.get("pro").rps
    assert not free.allows("/api/v1/gallery/search") and enterprise.allows("/api/v1/gallery/search")
    assert enterprise.daily_quota is None


def test_unknown_tier_raises() -> None:
    with pytest.raises(UnknownTier):
        Tiers({}).get("gold")


@pytest.mark.parametrize("bad", [{"rps": 0}, {"burst": 0}, {"routes": []}, {"daily_quota": 0}])
def test_invalid_tier_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_tier(**bad)


def test_tiers_file_with_a_bad_tier_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text("free:\n  rps: -1\n  burst: 1\n  max_batch: 1\n  max_image_bytes: 1\n  routes: ['/*']\n")
    with pytest.raises(ValidationError):
        Tiers.from_file(path)
