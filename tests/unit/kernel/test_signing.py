"""The gateway's signature over the identity it forwards (kernel/signing.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.signing import MAX_AGE_S, sign, verify

SECRET = "a-secret-only-the-gateway-and-the-api-hold"
IDENTITY = {"x-client-id": "a1b2c3", "x-tier": "pro", "x-tier-max-batch": "32", "x-tier-max-image-bytes": "5242880"}
REQUEST: dict[str, Any] = {"method": "POST", "uri": "/api/v1/classify?top_k=3", "request_id": "req-1"}


def _signed(**changes: Any) -> str:
    return sign(SECRET, **{**REQUEST, "headers": IDENTITY, "now": 1_000_000.0, **changes})


def test_the_api_accepts_what_the_gateway_signed() -> None:
    assert verify(SECRET, _signed(), **REQUEST, headers=IDENTITY, now=1_000_010.0)
    assert _signed().startswith("t=1000000,v1=")


@pytest.mark.parametrize(
    "change",
    [
        {"headers": {**IDENTITY, "x-tier": "enterprise"}},  # a caller claiming a better tier
        {"headers": {**IDENTITY, "x-tier-max-image-bytes": "999999999"}},
        {"headers": {**IDENTITY, "x-client-id": "somebody-else"}},
        {"uri": "/api/v1/detect"},  # the signature of one route replayed on another
        {"method": "DELETE"},
        {"request_id": "req-2"},
    ],
)
def test_anything_changed_after_signing_is_refused(change: dict[str, Any]) -> None:
    asked = {**REQUEST, "headers": IDENTITY, **change}
    assert not verify(SECRET, _signed(), **asked, now=1_000_010.0)


def test_an_old_signature_another_secret_or_a_malformed_header_is_refused() -> None:
    assert not verify(SECRET, _signed(), **REQUEST, headers=IDENTITY, now=1_000_000.0 + MAX_AGE_S + 1)
    assert not verify("another-secret-entirely", _signed(), **REQUEST, headers=IDENTITY, now=1_000_010.0)
    for value in (None, "", "garbage", "t=abc,v1=00", "v1=00", "t=1000000"):
        assert not verify(SECRET, value, **REQUEST, headers=IDENTITY, now=1_000_010.0)
