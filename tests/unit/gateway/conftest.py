"""Fixtures of the gateway tests: a key store on the migrated SQLite ``engine``, tiers to check keys against."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from gateway.keys import KeyStore
from gateway.tiers import Tier, Tiers

HASH_KEY = b"test-hash-key"


@pytest.fixture
def store(engine: Engine) -> KeyStore:
    return KeyStore(engine, hash_key=HASH_KEY)


def make_tier(**overrides: object) -> Tier:
    values: dict[str, object] = {
        "rps": 10,
        "burst": 3,
        "daily_quota": None,
        "max_batch": 4,
        "max_image_bytes": 1024,
        "routes": ["/api/v1/*"],
    }
    values.update(overrides)
    return Tier.model_validate(values)


@pytest.fixture
def tiers() -> Tiers:
    return Tiers({"pro": make_tier(), "free": make_tier(routes=["/api/v1/classify"])})
