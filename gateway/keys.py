"""API keys: ``cvk_<prefix>_<secret>``; the prefix is public, the secret is stored only as an HMAC-SHA256.

The prefix finds the row; the secret's keyed hash is compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, select

from kernel.db.tables import ApiKey, ApiKeyPublic, utcnow

KEY_SCHEME = "cvk"
PREFIX_BYTES = 6  # 12 hex characters
SECRET_BYTES = 32


class InvalidKeyFormat(ValueError):
    """The string is not shaped like an API key."""


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    secret: str


def generate_key() -> tuple[str, ParsedKey]:
    """A new random key as the client sees it, and its parts."""
    prefix, secret = secrets.token_hex(PREFIX_BYTES), secrets.token_urlsafe(SECRET_BYTES)
    return f"{KEY_SCHEME}_{prefix}_{secret}", ParsedKey(prefix, secret)


def parse_key(key: str) -> ParsedKey:
    """Split a key into prefix and secret (the secret may itself contain ``_``).

    Raises:
        InvalidKeyFormat: The key does not have the ``cvk_<prefix>_<secret>`` shape.
    """
    parts = key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != 2 * PREFIX_BYTES or not parts[2]:
        raise InvalidKeyFormat("not an API key")
    return ParsedKey(parts[1], parts[2])


def hash_secret(secret: str, *, hash_key: bytes) -> str:
    """The keyed hash stored for a secret: HMAC-SHA256 under the gateway's secret, hex."""
    return hmac.new(hash_key, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str, *, hash_key: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret, hash_key=hash_key), stored_hash)


class KeyStore:
    """API keys in the database (PostgreSQL, or SQLite in local mode)."""

    def __init__(self, engine: Engine, *, hash_key: bytes) -> None:
        self._engine = engine
        self._hash_key = hash_key

    def create(self, *, name: str, tier: str) -> tuple[str, ApiKeyPublic]:
        """Store a new key; the full key is returned here only and never again."""
        key, parts = generate_key()
        row = ApiKey(
            prefix=parts.prefix, name=name, tier=tier, key_hash=hash_secret(parts.secret, hash_key=self._hash_key)
        )
        with Session(self._engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            return key, ApiKeyPublic.model_validate(row, from_attributes=True)

    def list(self) -> list[ApiKeyPublic]:
        """Every key, oldest first, without hashes."""
        with Session(self._engine) as session:
            rows = session.exec(select(ApiKey).order_by(ApiKey.id)).all()  # type: ignore[arg-type]
            return [ApiKeyPublic.model_validate(row, from_attributes=True) for row in rows]

    def revoke(self, *, prefix: str) -> bool:
        """Revoke the key with ``prefix``; False when there is none (revoking twice keeps the first time)."""
        with Session(self._engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
                session.commit()
            return True

    def authenticate(self, key: str) -> ApiKeyPublic | None:
        """The key's record when the key is well formed, known and its secret matches; else None.

        A revoked key is returned (with ``revoked_at`` set) so the caller can answer 403 rather than 401.
        """
        try:
            parts = parse_key(key)
        except InvalidKeyFormat:
            return None
        with Session(self._engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.prefix == parts.prefix)).first()
            if row is None or not secret_matches(parts.secret, row.key_hash, hash_key=self._hash_key):
                return None
            return ApiKeyPublic.model_validate(row, from_attributes=True)
