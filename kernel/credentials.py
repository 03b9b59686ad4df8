"""The one rule for secrets and passwords that production refuses (both the api's and the gateway's settings)."""

from __future__ import annotations

from pydantic import SecretStr

# Passwords from examples and compose files; refused in production URLs.
DEFAULT_PASSWORDS = frozenset({"changethis", "postgres", "password", "secret", "redis"})
MIN_SIGNING_SECRET_CHARS = 16


def weak_signing_secret(secret: SecretStr | None) -> bool:
    """Whether a CV_GATEWAY_SIGNING_SECRET is missing, short or a default (refused in production by both sides)."""
    value = secret.get_secret_value() if secret is not None else ""
    return len(value) < MIN_SIGNING_SECRET_CHARS or value in DEFAULT_PASSWORDS
