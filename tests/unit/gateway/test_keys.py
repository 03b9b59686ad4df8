"""API keys: format, keyed hashing, constant-time comparison, and the store."""

from __future__ import annotations

import hmac

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway import keys
from gateway.keys import InvalidKeyFormat, KeyStore, generate_key, hash_secret, parse_key, secret_matches
from kernel.db.tables import ApiKey
from tests.unit.gateway.conftest import HASH_KEY


def test_generated_key_parses_back_to_its_parts() -> None:
    key, parts = generate_key()
    assert key.startswith(f"cvk_{parts.prefix}_")
    assert parse_key(key) == parts


@pytest.mark.parametrize("bad", ["", "cvk_", "abc_0123456789ab_secret", "cvk_short_secret", "cvk_0123456789ab_"])
def test_parse_key_refuses_malformed_keys(bad: str) -> None:
    with pytest.raises(InvalidKeyFormat):
        parse_key(bad)


def test_secret_with_underscores_survives_parsing() -> None:
    assert parse_key("cvk_0123456789ab_a_b_c").secret == "a_b_c"


def test_hash_is_keyed_and_deterministic() -> None:
    assert hash_secret("s", hash_key=b"k1") == hash_secret("s", hash_key=b"k1")
    assert hash_secret("s", hash_key=b"k1") != hash_secret("s", hash_key=b"k2")
    assert len(hash_secret("s", hash_key=b"k1")) == 64


def test_secret_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    stored = hash_secret("right", hash_key=HASH_KEY)
    assert secret_matches("right", stored, hash_key=HASH_KEY)
    assert not secret_matches("wrong", stored, hash_key=HASH_KEY)
    assert len(calls) == 2


def test_create_stores_only_the_hash(store: KeyStore, engine: Engine) -> None:
    key, record = store.create(name="ci", tier="pro")
    secret = parse_key(key).secret
    with Session(engine) as session:
        row = session.exec(select(ApiKey)).one()
    assert row.prefix == record.prefix and row.tier == "pro" and row.name == "ci"
    assert secret not in row.key_hash and row.key_hash == hash_secret(secret, hash_key=HASH_KEY)


def test_authenticate_known_unknown_and_tampered_keys(store: KeyStore) -> None:
    key, record = store.create(name="a", tier="pro")
    found = store.authenticate(key)
    assert found is not None and found.prefix == record.prefix
    assert store.authenticate(key + "x") is None  # wrong secret
    assert store.authenticate(generate_key()[0]) is None  # unknown prefix
    assert store.authenticate("not-a-key") is None


def test_revoke_marks_the_key_and_list_shows_it(store: KeyStore) -> None:
    key, record = store.create(name="a", tier="pro")
    store.create(name="b", tier="free")
    assert store.revoke(prefix=record.prefix)
    first = store.authenticate(key)
    assert first is not None and first.revoked_at is not None
    assert store.revoke(prefix=record.prefix)  # twice: still revoked, first time kept
    again = store.authenticate(key)
    assert again is not None and again.revoked_at == first.revoked_at
    assert not store.revoke(prefix="000000000000")
    listed = store.list()
    assert [r.name for r in listed] == ["a", "b"]
    assert listed[1].revoked_at is None
