"""Gateway settings: default secret refused outside local mode, database URL, fail mode."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import GatewaySettings

SIGNING = "another-long-random-secret"


def _settings(**values: Any) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_local_mode_accepts_the_default_secret_and_uses_the_api_sqlite() -> None:
    settings = _settings()
    assert settings.sqlalchemy_url.startswith("sqlite:///") and settings.sqlalchemy_url.endswith("cv.sqlite3")
    assert settings.fail_mode == "closed"


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="KEY_HASH_SECRET"):
        _settings(environment="production", database_url="postgresql://cv@db/cv")


@pytest.mark.parametrize("signing", [None, "short", "changethis"])
def test_production_needs_a_signing_secret_for_the_api(signing: str | None) -> None:
    with pytest.raises(ValidationError, match="SIGNING_SECRET"):
        _settings(environment="production", key_hash_secret="a-long-random-secret", signing_secret=signing)


def test_production_needs_a_database_url() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        _settings(environment="production", key_hash_secret="a-long-random-secret", signing_secret=SIGNING)


def test_postgres_url_uses_psycopg_and_fail_open_is_reported() -> None:
    settings = _settings(
        environment="production",
        key_hash_secret="a-long-random-secret",
        signing_secret=SIGNING,
        database_url="postgresql://cv@db/cv",
        redis_url="redis://redis:6379/0",
        fail_open=True,
    )
    assert settings.sqlalchemy_url == "postgresql+psycopg://cv@db/cv"
    assert settings.fail_mode == "open"


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_GATEWAY_FAIL_OPEN", "true")
    assert _settings().fail_open


def test_production_needs_a_shared_redis() -> None:
    with pytest.raises(ValidationError, match="REDIS_URL"):
        _settings(
            environment="production",
            key_hash_secret="a-long-random-secret",
            signing_secret=SIGNING,
            database_url="postgresql://cv@db/cv",
        )


def test_keys_default_to_the_apis_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path))
    assert _settings().sqlalchemy_url == f"sqlite:///{tmp_path}/cv.sqlite3"
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://api@db/cv")
    assert _settings().sqlalchemy_url == "postgresql+psycopg://api@db/cv"
    monkeypatch.setenv("CV_GATEWAY_DATABASE_URL", "postgresql://gw@db/keys")  # set apart: the gateway's own wins
    assert _settings().sqlalchemy_url == "postgresql+psycopg://gw@db/keys"
