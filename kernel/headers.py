"""Names of the headers the gateway and the api exchange (lower case: ASGI hands headers over lower-cased)."""

from __future__ import annotations

# What the gateway says about an admitted request (gateway/app.py); the api reads them only when it can trust them.
CLIENT_ID_HEADER = "x-client-id"
TIER_HEADER = "x-tier"
TIER_MAX_BATCH_HEADER = "x-tier-max-batch"
TIER_MAX_IMAGE_BYTES_HEADER = "x-tier-max-image-bytes"
GATEWAY_HEADERS = (CLIENT_ID_HEADER, TIER_HEADER, TIER_MAX_BATCH_HEADER, TIER_MAX_IMAGE_BYTES_HEADER)
# The client's rate-limit state (IETF draft names): on the gateway's answers, and handed on by the api behind it.
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
