"""The gateway's signature over what it tells the api about a request (ADR 0008).

Behind Traefik the api reads the caller's identity and tier limits from headers the auth service set.
Without a signature that trust rests on the network alone: anything that reaches an api replica
could claim any tier. With ``CV_GATEWAY_SIGNING_SECRET`` set on both, the auth service adds
``X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over the method, the URI, the request
id and the identity headers, and the api refuses its protected routes without a valid one.

A signature binds one method and URI for ``MAX_AGE_S`` seconds; it does not cover the body. It is a
second line behind the network, not a replacement for it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from kernel.headers import GATEWAY_HEADERS

SIGNATURE_HEADER = "x-gateway-signature"
MAX_AGE_S = 60  # clock skew between the auth service and the api, plus the time a request waits in Traefik


def _message(timestamp: int, method: str, uri: str, request_id: str, headers: Mapping[str, str]) -> bytes:
    identity = "\n".join(headers.get(name, "") for name in GATEWAY_HEADERS)
    return f"v1\n{timestamp}\n{method.upper()}\n{uri}\n{request_id}\n{identity}".encode()


def sign(
    secret: str, *, method: str, uri: str, request_id: str, headers: Mapping[str, str], now: float | None = None
) -> str:
    """The header value for a request the gateway admitted (``headers``: lower-case names)."""
    timestamp = int(time.time() if now is None else now)
    digest = hmac.new(secret.encode(), _message(timestamp, method, uri, request_id, headers), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str,
    value: str | None,
    *,
    method: str,
    uri: str,
    request_id: str,
    headers: Mapping[str, str],
    now: float | None = None,
) -> bool:
    """Whether ``value`` is the gateway's signature of this request, made in the last ``MAX_AGE_S`` seconds."""
    if not value:
        return False
    try:
        fields = dict(part.split("=", 1) for part in value.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > MAX_AGE_S:
        return False
    expected = hmac.new(secret.encode(), _message(timestamp, method, uri, request_id, headers), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)
