"""Load through bentoml.depends: 2,000 requests, 20 concurrent users, zero errors.

BentoML 1.4.31-1.4.40 close the shared client session every 100 calls while calls are
in flight (upstream issue #5540) and fail about a quarter of such requests; the pinned
1.4.30 must answer all of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import numpy as np
import pytest

from tests.conftest import encode
from tests.integration.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 2000
USERS = 20


async def _hammer(url: str, image: bytes) -> Counter[int]:
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)

    async def user(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                response = await client.post(url, files={"image": ("x.jpg", image, "image/jpeg")}, data={"top_k": "1"})
                statuses[response.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[-1] += 1
                print("transport error", repr(exc))

    limits = httpx.Limits(max_connections=USERS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(user(client) for _ in range(USERS)))
    return statuses


def test_two_thousand_requests_through_depends_without_an_error(server: Server) -> None:
    rng = np.random.default_rng(0)
    image = encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    statuses = asyncio.run(_hammer(f"{server.url}/api/v1/classify", image))
    assert sum(statuses.values()) == REQUESTS
    assert statuses == Counter({200: REQUESTS}), statuses
