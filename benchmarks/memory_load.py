"""The traffic of the memory benchmark: mixed classify/detect/search at a concurrency, optionally paced to a rate,
and batch jobs (``POST /api/v1/batch`` with ``mode=job``) polled to the end. Counts every answer by status.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("benchmarks.memory")
# route -> (path, photo, form fields), in the mix's order: 2 classify, 1 detect, 1 search per 4 requests.
MIX: list[tuple[str, str, dict[str, str]]] = [
    ("/api/v1/classify", "chelsea", {"top_k": "5"}),
    ("/api/v1/detect", "astronaut", {}),
    ("/api/v1/classify", "astronaut", {"top_k": "5"}),
    ("/api/v1/search", "chelsea", {"top_k": "5"}),
]
DONE = {"succeeded", "partial", "failed", "cancelled"}


@dataclass
class Tally:
    """Answers by route and status; errors are anything but 2xx (and transport errors)."""

    statuses: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    jobs: Counter[str] = field(default_factory=Counter)

    def record(self, route: str, status: str, detail: str = "") -> None:
        self.statuses[f"{route} {status}"] += 1
        if status.startswith("2"):
            self.ok += 1
        elif len(self.errors) < 20:
            self.errors.append(f"{route} {status} {detail[:200]}")

    @property
    def error_count(self) -> int:
        return sum(n for k, n in self.statuses.items() if not k.split()[-1].startswith("2"))

    def as_dict(self) -> dict[str, Any]:
        return {"statuses": dict(self.statuses), "ok": self.ok, "errors": self.errors, "jobs": dict(self.jobs)}


async def _post(client: httpx.AsyncClient, tally: Tally, path: str, jpeg: bytes, fields: dict[str, str]) -> None:
    try:
        r = await client.post(path, files={"image": ("photo.jpg", jpeg, "image/jpeg")}, data=fields)
    except httpx.HTTPError as exc:
        tally.record(path, type(exc).__name__, str(exc))
        return
    tally.record(path, str(r.status_code), "" if r.is_success else r.text)


Transport = httpx.AsyncBaseTransport | None  # None: the network; tests give an httpx.MockTransport


async def mixed(
    base: str,
    headers: dict[str, str],
    jpegs: dict[str, bytes],
    seconds: float,
    concurrency: int,
    rate: float | None,
    transport: Transport = None,
) -> dict[str, Any]:
    """Mixed requests for ``seconds`` from ``concurrency`` workers; at most ``rate`` per second when given."""
    tally, mix = Tally(), itertools.cycle(MIX)
    start = time.monotonic()
    deadline, slot = start + seconds, [start]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=120, transport=transport
    ) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                if rate:  # a shared schedule: request n goes at start + n / rate
                    slot[0] += 1 / rate
                    await asyncio.sleep(max(0.0, slot[0] - time.monotonic()))
                path, photo, fields = next(mix)
                await _post(client, tally, path, jpegs[photo], fields)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    return {**tally.as_dict(), "seconds": elapsed, "throughput": tally.ok / elapsed, "error_count": tally.error_count}


async def batch_job(
    client: httpx.AsyncClient, tally: Tally, jpegs: dict[str, bytes], images: int, poll_s: float = 1.0
) -> None:
    """One job of ``images`` images (alternately classify and detect), polled until it ends."""
    task = "classify" if tally.jobs.total() % 2 == 0 else "detect"
    photos = list(jpegs.values())
    files = [("images", (f"{i}.jpg", photos[i % len(photos)], "image/jpeg")) for i in range(images)]
    try:
        r = await client.post("/api/v1/batch", files=files, data={"task": task, "mode": "job"})
        tally.record("/api/v1/batch", str(r.status_code), "" if r.is_success else r.text)
        if r.status_code != 202:
            return
        location, status = r.json()["location"], "queued"
        for _ in range(600):
            await asyncio.sleep(poll_s)
            poll = await client.get(location, params={"limit": 1})
            if poll.status_code != 200:
                tally.record("GET job", str(poll.status_code), poll.text)
                return
            status = poll.json()["status"]
            if status in DONE:
                break
        tally.jobs[status] += 1
        if status != "succeeded":
            tally.errors.append(f"job {location} ended {status}")
    except httpx.HTTPError as exc:
        tally.record("/api/v1/batch", type(exc).__name__, str(exc))


async def jobs(
    base: str, headers: dict[str, str], jpegs: dict[str, bytes], count: int, images: int, transport: Transport = None
) -> dict[str, Any]:
    """``count`` batch jobs, two at a time."""
    tally = Tally()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120, transport=transport) as client:
        for i in range(0, count, 2):
            await asyncio.gather(*(batch_job(client, tally, jpegs, images) for _ in range(min(2, count - i))))
    return {
        **tally.as_dict(),
        "error_count": tally.error_count + sum(n for s, n in tally.jobs.items() if s != "succeeded"),
    }


async def soak(
    base: str,
    headers: dict[str, str],
    jpegs: dict[str, bytes],
    seconds: float,
    rate: float,
    job_every_s: float,
    transport: Transport = None,
) -> dict[str, Any]:
    """Paced mixed traffic for ``seconds`` and one batch job of 16 images every ``job_every_s``."""
    tally = Tally()

    async def job_loop() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120, transport=transport) as client:
            end = time.monotonic() + seconds - job_every_s / 2
            while time.monotonic() < end:
                await asyncio.sleep(job_every_s / 2)
                await batch_job(client, tally, jpegs, 16)
                await asyncio.sleep(job_every_s / 2)

    load, _ = await asyncio.gather(mixed(base, headers, jpegs, seconds, 16, rate, transport), job_loop())
    job_errors = tally.error_count + sum(n for s, n in tally.jobs.items() if s != "succeeded")
    return {**load, "batch": tally.as_dict(), "error_count": load["error_count"] + job_errors}
