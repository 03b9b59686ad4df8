"""Settings of the gateway process, read from ``CV_GATEWAY_*`` environment variables (STYLE.md, habit 1)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.credentials import DEFAULT_PASSWORDS, weak_signing_secret
from kernel.db.url import sqlalchemy_database_url
from kernel.paths import REPO_ROOT

DEFAULT_KEY_HASH_SECRET = "changethis"


class GatewaySettings(BaseSettings):
    """Settings of the auth and tier service."""

    model_config = SettingsConfigDict(env_prefix="CV_GATEWAY_", env_file=".env", extra="ignore", populate_by_name=True)

    environment: Literal["local", "production"] = "local"
    # The HMAC key under which API-key secrets are hashed; changing it invalidates every key.
    key_hash_secret: SecretStr = SecretStr(DEFAULT_KEY_HASH_SECRET)
    # Signs what the gateway tells the api about an admitted request (kernel/signing.py); the api holds the same
    # secret (CV_GATEWAY_SIGNING_SECRET for both). Unset: no signature, the api trusts the network alone.
    signing_secret: SecretStr | None = None
    # Where the rate limits live, shared by every replica; unset (local mode only): in this process.
    redis_url: str | None = None
    redis_timeout_s: float = Field(default=0.5, gt=0)
    redis_prefix: str = "cv:gw:"
    # The api's database unless set apart (CV_GATEWAY_DATABASE_URL, else CV_DATABASE_URL); unset: the api's embedded
    # SQLite file under CV_GATEWAY_DATA_DIR, else CV_DATA_DIR, else .data (services/config.py).
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CV_GATEWAY_DATABASE_URL", "CV_DATABASE_URL")
    )
    data_dir: Path = Field(
        default=REPO_ROOT / ".data", validation_alias=AliasChoices("CV_GATEWAY_DATA_DIR", "CV_DATA_DIR")
    )
    # The key cache (gateway/keycache.py, ADR 0013): rows kept per replica, dropped at once on a change announced on
    # Redis pub/sub; the TTLs are a backstop only. 0 entries, or no Redis: every request reads the database.
    key_cache_entries: int = Field(default=10_000, ge=0)
    key_cache_ttl_s: float = Field(default=30.0, gt=0)
    key_cache_negative_ttl_s: float = Field(default=5.0, gt=0)
    # Decide requests whose key is cached on the event loop (no worker-thread hop); false: always in a thread.
    auth_inline: bool = True
    # When Redis is unreachable: true admits requests unlimited (fail open), false answers 503 (fail closed).
    fail_open: bool = False
    tiers_file: Path = Path(__file__).with_name("tiers.yaml")
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8081, gt=0)

    @model_validator(mode="after")
    def _check_production(self) -> GatewaySettings:
        if self.environment == "production" and self.key_hash_secret.get_secret_value() in (
            DEFAULT_PASSWORDS | {DEFAULT_KEY_HASH_SECRET}
        ):
            raise ValueError("set CV_GATEWAY_KEY_HASH_SECRET: the default is refused outside local mode")
        if self.environment == "production" and weak_signing_secret(self.signing_secret):
            raise ValueError("set CV_GATEWAY_SIGNING_SECRET (16+ characters): the api checks what the gateway signs")
        if self.environment == "production" and not self.database_url:
            raise ValueError("production needs CV_GATEWAY_DATABASE_URL (PostgreSQL)")
        if self.environment == "production" and not self.redis_url:
            raise ValueError("production needs CV_GATEWAY_REDIS_URL: replicas share their limits there")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The key database as SQLAlchemy wants it: psycopg 3 for PostgreSQL, the api's SQLite by default."""
        return sqlalchemy_database_url(self.database_url, self.data_dir)

    @property
    def key_channel(self) -> str:
        """The Redis pub/sub channel on which key changes are announced to every auth replica."""
        return f"{self.redis_prefix}keys"

    @property
    def fail_mode(self) -> str:
        """``open`` or ``closed``: what happens to requests while Redis is unreachable."""
        return "open" if self.fail_open else "closed"


@lru_cache
def get_gateway_settings() -> GatewaySettings:
    """Return the process-wide settings, read once from the environment."""
    return GatewaySettings()
