"""Dependencies of the routes: settings, the model client, and validated uploads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated

from fastapi import Depends, FastAPI, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from kernel.errors import PayloadTooLarge, ServiceError
from kernel.headers import TIER_MAX_BATCH_HEADER, TIER_MAX_IMAGE_BYTES_HEADER
from services.clients.base import AsyncModelClient
from services.config import ServingSettings
from services.http.admission import AdmissionController
from services.http.dataplane import DataPlane
from services.http.recording import current_ledger
from services.imaging import DecodedImage, DecodeFloor, decode_image, header_pixels
from services.jobs.queue import JobQueue
from services.models.runtime import may_run_inline
from services.process import heap_trim_due, trim_heap_if_due

# The routes' model client (the composition root's, wrapped by the cache and the inference log).
BackendProvider = Callable[[], AsyncModelClient]
DataPlaneProvider = Callable[[], DataPlane | None]
JobsProvider = Callable[[], JobQueue | None]


def install(
    app: FastAPI,
    settings: ServingSettings,
    backend: BackendProvider,
    data_plane: DataPlaneProvider | None = None,
    jobs: JobsProvider | None = None,
) -> None:
    """Attach the settings and the providers to the app (the composition root calls this)."""
    app.state.settings = settings
    app.state.backend_provider = backend
    app.state.data_plane_provider = data_plane or (lambda: None)
    app.state.jobs_provider = jobs or (lambda: None)


# Every dependency is a coroutine: FastAPI runs a plain ``def`` dependency in its thread pool, a hand-off to a thread
# and back per dependency per request (three for /classify) for what is an attribute read.


async def _settings(request: Request) -> ServingSettings:
    return _settings_of(request)


def _settings_of(request: Request) -> ServingSettings:
    settings: ServingSettings = request.app.state.settings
    return settings


async def _backend(request: Request) -> AsyncModelClient:
    backend: AsyncModelClient = request.app.state.backend_provider()
    return backend


async def _data_plane(request: Request) -> DataPlane | None:
    plane: DataPlane | None = request.app.state.data_plane_provider()
    return plane


async def _jobs(request: Request) -> JobQueue | None:
    jobs: JobQueue | None = request.app.state.jobs_provider()
    return jobs


async def _admission(request: Request) -> AdmissionController | None:
    admission: AdmissionController | None = getattr(request.app.state, "admission", None)
    return admission


@dataclass(frozen=True)
class Limits:
    """The input limits of one request: the server's, tightened by the caller's tier when the gateway says so."""

    max_image_bytes: int
    max_image_pixels: int
    max_batch_items: int
    # Images of at most this many pixels decode on the event loop while the process serves this request alone
    # (ServingSettings.inline_alone_max_pixels); 0: always in a thread.
    inline_max_pixels: int = 0
    # ... and at any load (ServingSettings.decode_inline_max_pixels); 0: only alone.
    decode_inline_max_pixels: int = 0

    @classmethod
    def of(cls, settings: ServingSettings, headers: Mapping[str, str] | None = None) -> Limits:
        """``settings``' limits, lowered to ``X-Tier-Max-Image-Bytes`` / ``X-Tier-Max-Batch`` when trusted."""
        inline, always = settings.inline_alone_max_pixels, settings.decode_inline_max_pixels
        limits = cls(settings.max_image_bytes, settings.max_image_pixels, settings.max_batch_items, inline, always)
        if headers is None or not settings.gateway_headers_trusted:
            return limits
        image_bytes = _positive(headers.get(TIER_MAX_IMAGE_BYTES_HEADER))
        batch = _positive(headers.get(TIER_MAX_BATCH_HEADER))
        return cls(
            min(limits.max_image_bytes, image_bytes or limits.max_image_bytes),
            limits.max_image_pixels,
            min(limits.max_batch_items, batch or limits.max_batch_items),
            inline,
            always,
        )

    def decodes_inline(self, data: bytes) -> bool:
        """Whether ``data`` decodes on the event loop: a small image (``decode_inline_max_pixels``) at any load, or a
        larger one while the process serves this request alone (``inline_max_pixels``).

        Each is spared a hand-off to a thread and back (~0.5 ms for a lone request; under load at concurrency 16 ~10 %
        more classify answers a second, TECHNICAL.md); a larger image under load decodes in a thread, where its
        decode (milliseconds, without the GIL) overlaps the event loop's work.
        """
        alone = self.inline_max_pixels if may_run_inline(self.inline_max_pixels) else 0
        limit = max(alone, self.decode_inline_max_pixels)
        if not limit:
            return False
        pixels = header_pixels(data)  # None: unreadable, and the thread's decode_image raises the right problem
        return pixels is not None and pixels <= limit


def _positive(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


async def _limits(request: Request) -> Limits:
    return Limits.of(_settings_of(request), request.headers)


SettingsDep = Annotated[ServingSettings, Depends(_settings)]
LimitsDep = Annotated[Limits, Depends(_limits)]
BackendDep = Annotated[AsyncModelClient, Depends(_backend)]
DataPlaneDep = Annotated[DataPlane | None, Depends(_data_plane)]
AdmissionDep = Annotated[AdmissionController | None, Depends(_admission)]  # None: admission control is off
JobsDep = Annotated[JobQueue | None, Depends(_jobs)]  # None: this server takes no batch jobs


def _decoded_then_trimmed(decode: Callable[[], DecodedImage]) -> DecodedImage:
    """``decode()`` in a pool thread, then the heap's free pages back to the kernel if due (``trim_heap_if_due``).

    The api decodes every upload and frees it once answered; where the models run in other processes (the production
    topology) nothing else in the api trims, and its heap stepped up under the soak (benchmarks/reports/
    memory_topology.md). Here, off the event loop, at most once per ``CV_MALLOC_TRIM_INTERVAL_S``.
    """
    image = decode()
    trim_heap_if_due()
    return image


async def read_image(upload: UploadFile, limits: Limits, floor: DecodeFloor | None = None) -> DecodedImage:
    """Read one uploaded part within the byte limit and decode it off the event loop.

    ``floor``: what the model that reads it needs (``catalogue.decode_floor``); a JPEG well above it decodes reduced.

    Each image read or refused is noted, in upload order, in the inference log's ledger of the request
    (services/http/recording.py): this is where every upload is validated, before any model call.
    """
    ledger = current_ledger()
    try:
        data = await upload.read(limits.max_image_bytes + 1)
        if len(data) > limits.max_image_bytes:
            raise PayloadTooLarge(f"image {upload.filename!r} exceeds {limits.max_image_bytes} bytes")
        decode = partial(
            decode_image,
            data,
            declared_type=upload.content_type,
            max_bytes=limits.max_image_bytes,
            max_pixels=limits.max_image_pixels,
            floor=floor,
        )
        if limits.decodes_inline(data):
            image = decode()
            if heap_trim_due():  # the trim (~1 ms) in a thread, off the request's path
                asyncio.get_running_loop().run_in_executor(None, trim_heap_if_due)
        else:
            image = await run_in_threadpool(_decoded_then_trimmed, decode)
    except ServiceError as exc:
        ledger.image_refused(exc)
        raise
    ledger.image_read(image)
    return image
