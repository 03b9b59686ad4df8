"""Limits: where a request's image decodes (on the event loop only while the process serves it alone, when small)."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from PIL import Image
from starlette.datastructures import Headers, UploadFile

from services.config import ServingSettings
from services.http import deps
from services.http.deps import Limits, read_image
from services.models import runtime


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _limits(inline_max_pixels: int, always: int = 0) -> Limits:
    return Limits.of(ServingSettings(inline_alone_max_pixels=inline_max_pixels, decode_inline_max_pixels=always))


@pytest.mark.parametrize(
    ("inline_max_pixels", "demand", "size", "inline"),
    [
        (10_000, 1, (100, 80), True),
        (10_000, 0, (100, 80), True),
        (10_000, 2, (100, 80), False),  # another request is being served: its decode overlaps in a thread
        (10_000, 1, (200, 80), False),  # 16,000 pixels: in a thread
        (0, 1, (10, 10), False),  # off
    ],
)
def test_decodes_inline_only_alone_and_small(
    monkeypatch: pytest.MonkeyPatch, inline_max_pixels: int, demand: int, size: tuple[int, int], inline: bool
) -> None:
    monkeypatch.setattr(runtime.DEMAND, "_count", demand)
    assert _limits(inline_max_pixels).decodes_inline(_jpeg(*size)) is inline


@pytest.mark.parametrize(
    ("demand", "size", "inline"),
    [
        (5, (100, 80), True),  # under load: small enough for the loop
        (5, (100, 81), False),  # 8,100 pixels: in a thread
        (1, (200, 80), True),  # alone: the alone limit, the larger
    ],
)
def test_small_images_decode_inline_at_any_load(
    monkeypatch: pytest.MonkeyPatch, demand: int, size: tuple[int, int], inline: bool
) -> None:
    monkeypatch.setattr(runtime.DEMAND, "_count", demand)
    assert _limits(20_000, always=8_000).decodes_inline(_jpeg(*size)) is inline


def test_the_default_decodes_a_vga_photo_inline_under_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.DEMAND, "_count", 9)
    limits = Limits.of(ServingSettings(inline_alone_max_pixels=0))
    assert limits.decodes_inline(_jpeg(640, 480)) is True
    assert limits.decodes_inline(_jpeg(641, 480)) is False


def test_an_unreadable_upload_decodes_in_a_thread_where_its_problem_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.DEMAND, "_count", 1)
    assert _limits(10_000).decodes_inline(b"not an image") is False


def test_the_tiers_limits_keep_the_inline_setting() -> None:
    settings = ServingSettings(inline_alone_max_pixels=123, decode_inline_max_pixels=45, trust_gateway_headers=True)
    limits = Limits.of(settings, {"x-tier-max-batch": "2"})
    assert (limits.max_batch_items, limits.inline_max_pixels, limits.decode_inline_max_pixels) == (2, 123, 45)


@pytest.mark.parametrize(("demand", "on_loop"), [(1, True), (3, False)])
def test_read_image_decodes_where_limits_say(monkeypatch: pytest.MonkeyPatch, demand: int, on_loop: bool) -> None:
    monkeypatch.setattr(runtime.DEMAND, "_count", demand)
    threads: list[int] = []
    trimmed: list[int] = []
    decode = deps.decode_image

    def noting(*args: object, **kwargs: object) -> object:
        threads.append(threading.get_ident())
        return decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(deps, "decode_image", noting)
    monkeypatch.setattr(deps, "trim_heap_if_due", lambda: trimmed.append(threading.get_ident()) or True)
    monkeypatch.setattr(deps, "heap_trim_due", lambda: True)
    data = _jpeg(40, 30)

    async def scenario() -> int:
        upload = UploadFile(io.BytesIO(data), filename="x.jpg", headers=Headers({"content-type": "image/jpeg"}))
        image = await read_image(upload, _limits(10_000))
        assert image.pixels.shape == (30, 40, 3)
        await asyncio.sleep(0.05)  # the trim handed to a thread after an inline decode
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert (threads == [loop_thread]) is on_loop
    # The heap is trimmed in a pool thread (the decode's, or one it is handed to), never on the event loop.
    assert len(trimmed) == 1 and trimmed[0] != loop_thread
    assert (trimmed == threads) is not on_loop
