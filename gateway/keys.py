"""API keys: ``cvk_<prefix>_<secret>``; the prefix is public, the secret is stored only as an HMAC-SHA256.

The prefix finds the row; the secret's keyed hash is compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy import select as sa_select
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


@dataclass(frozen=True)
class StoredKey:
    """A key's row as the gateway checks it: the public record and the keyed hash of its secret."""

    record: ApiKeyPublic
    key_hash: str


class KeyStore:
    """API keys in the database (PostgreSQL, or SQLite in local mode).

    ``on_change`` is called with a key's prefix after every committed change to it (create, revoke, tier): the
    auth service's key caches are told through it (gateway/keycache.py publishes the prefix on Redis).
    """

    def __init__(self, engine: Engine, *, hash_key: bytes, on_change: Callable[[str], None] | None = None) -> None:
        self._engine = engine
        self._hash_key = hash_key
        self._on_change = on_change

    @property
    def hash_key(self) -> bytes:
        return self._hash_key

    def _changed(self, prefix: str) -> None:
        if self._on_change is not None:
            self._on_change(prefix)

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
            record = ApiKeyPublic.model_validate(row, from_attributes=True)
        self._changed(record.prefix)  # a cache may hold this prefix as unknown
        return key, record

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
        self._changed(prefix)  # again on a second revoke: a replica that missed the first hears it now
        return True

    def set_tier(self, *, prefix: str, tier: str) -> bool:
        """Move the key with ``prefix`` to ``tier``; False when there is none."""
        with Session(self._engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
            if row is None:
                return False
            row.tier = tier
            session.add(row)
            session.commit()
        self._changed(prefix)
        return True

    def lookup(self, prefix: str) -> StoredKey | None:
        """The row with ``prefix`` (revoked or not), or None: one indexed read, without the ORM's session."""
        table = ApiKey.__table__  # type: ignore[attr-defined]
        with self._engine.connect() as connection:
            row = connection.execute(sa_select(table).where(table.c.prefix == prefix)).mappings().first()
        if row is None:
            return None
        return StoredKey(ApiKeyPublic.model_validate(dict(row)), row["key_hash"])

    def authenticate(self, key: str) -> ApiKeyPublic | None:
        """The key's record when the key is well formed, known and its secret matches; else None.

        A revoked key is returned (with ``revoked_at`` set) so the caller can answer 403 rather than 401.
        """
        try:
            parts = parse_key(key)
        except InvalidKeyFormat:
            return None
        return checked(parts, self.lookup(parts.prefix), hash_key=self._hash_key)


def checked(parts: ParsedKey, stored: StoredKey | None, *, hash_key: bytes) -> ApiKeyPublic | None:
    """``stored``'s record when ``parts``' secret matches its hash, else None."""
    if stored is None or not secret_matches(parts.secret, stored.key_hash, hash_key=hash_key):
        return None
    return stored.record
