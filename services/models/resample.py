"""Pillow's bicubic and bilinear resize of RGB images, the same bytes at 4-6x less CPU (services/models/_resample.c).

The serving path resizes every classify and embed request with Pillow's convolution filters: the models were trained
and evaluated on Pillow's pixels, so another library's resize (OpenCV's bicubic has another kernel and no antialias)
would move their accuracy. Pillow's two passes are plain C, pixel by pixel: a fifth of the api's CPU per classify
answer under load (benchmarks/reports/resample.md). This module computes the filter coefficients exactly as
Pillow's ``Resample.c`` does (the same double-precision expressions in the same order, the box in single precision
as Pillow parses it, the same rounding to 22 fractional bits) and hands them to ``_resample``, which runs the same
integer sums with loops the compiler vectorises. tests/unit/services/models/test_resample.py holds it to Pillow's
bytes on random images, sizes and boxes, and on the data sets' photos.

Without the compiled module (a source checkout not installed with ``pip install -e .``, a build without a C
compiler), when it disagrees with the installed Pillow (checked at import), or turned off (``CV_NATIVE_RESAMPLE=false``,
applied by the services at start-up through :func:`configure`), :func:`resize` is Pillow's own: the same bytes,
Pillow's speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image

try:
    import services.models._resample as _resample
except ImportError:  # not compiled here: Pillow's resize
    _resample = None  # type: ignore[assignment]

FRACTION_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2
Box = tuple[float, float, float, float]


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic with a = -0.5, evaluated as Pillow writes it (Horner form; the order fixes the last bit)."""
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x * x) + 1  # ((a + 2) x - (a + 3)) x x + 1
    far = (((x - 5) * x + 8) * x - 4) * -0.5  # (((x - 5) x + 8) x - 4) a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


# Pillow's filter -> (its function, its support). Other filters (Lanczos, Hamming: sin and cos, whose last bit may
# differ between libm and NumPy; box; nearest: another code path) go to Pillow.
FILTERS: dict[int, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    Image.Resampling.BICUBIC: (_bicubic, 2.0),
    Image.Resampling.BILINEAR: (_bilinear, 1.0),
}


@lru_cache(maxsize=256)
def coefficients(in_size: int, in0: float, in1: float, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray]:
    """(first source pixel, count) per output pixel as int32 pairs, and the fixed-point weights (int32, ``ksize``
    per output pixel): Pillow's ``precompute_coeffs`` then ``normalize_coeffs_8bpc``.

    ``in0`` and ``in1`` must already be single-precision values (Pillow parses the box as C floats). Cached: a
    service sees the same few photo sizes again and again.
    """
    kernel, base_support = FILTERS[resample]
    scale = float(np.float32(in1) - np.float32(in0)) / out_size  # the difference in single precision, as in C
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    ksize = math.ceil(support) * 2 + 1
    center = in0 + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)  # C's (int) truncates toward zero
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = np.maximum(last - first, 0)
    taps = np.arange(ksize)
    weights = kernel(((taps[None, :] + first[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    weights = np.where(taps[None, :] < count[:, None], weights, 0.0)
    total = np.zeros(out_size)
    for k in range(ksize):  # summed tap by tap, in order, as Pillow's loop does (np.sum pairs them up)
        total = total + weights[:, k]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    fixed = weights * float(1 << FRACTION_BITS)
    fixed = np.trunc(np.where(weights < 0, fixed - 0.5, fixed + 0.5)).astype(np.int32)  # (int)(+-0.5 + w * 2^22)
    bounds = np.stack([first, count], axis=1).astype(np.int32)
    bounds.flags.writeable = False
    fixed.flags.writeable = False
    return bounds, fixed


def _pillow_major() -> int:
    from PIL import __version__

    return int(__version__.split(".")[0])


def vertical_first(height: int, width: int, out_h: int, out_w: int) -> bool:
    """Which pass Pillow runs first: horizontal, but since Pillow 13 vertical when the height shrinks by more than
    twice what the width does (its ``ImagingResampleInner``). The order changes the bytes (the first pass rounds)."""
    return _PILLOW_13 and (height - out_h) > 0 and (height - out_h) > (width - out_w) * 2


def resize(image: np.ndarray, size: tuple[int, int], resample: int, box: Box | None = None) -> np.ndarray:
    """``np.asarray(Image.fromarray(image).resize(size, resample, box=box))`` for an H x W x 3 uint8 image."""
    height, width = image.shape[:2]
    out_w, out_h = size
    if (
        not _native
        or resample not in FILTERS
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or out_w < 1
        or out_h < 1
    ):
        return np.asarray(Image.fromarray(image).resize(size, resample, box=box))
    x0, y0, x1, y1 = _single_box(box, width, height)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):  # Pillow's own checks and messages
        return np.asarray(Image.fromarray(image).resize(size, resample, box=box))
    if (out_w, out_h) == (width, height) and (x0, y0, x1, y1) == (0, 0, width, height):
        return image.copy()
    return _native_resize(np.ascontiguousarray(image), out_w, out_h, (x0, y0, x1, y1), resample)


def _single_box(box: Box | None, width: int, height: int) -> Box:
    """The box (default: the whole image) as Pillow's C code sees it: single-precision values."""
    x0, y0, x1, y1 = (float(np.float32(v)) for v in (box or (0, 0, width, height)))
    return x0, y0, x1, y1


def _native_resize(image: np.ndarray, out_w: int, out_h: int, box: Box, resample: int) -> np.ndarray:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    # Pillow's tests, box[2] and box[3] against the output's size included (ImagingResampleInner).
    need_h = out_w != width or x0 != 0 or x1 != out_w
    need_v = out_h != height or y0 != 0 or y1 != out_h
    v_first = need_h and need_v and vertical_first(height, width, out_h, out_w)
    v_bounds, v_weights = coefficients(height, y0, y1, out_h, resample)
    first_row, last_row = 0, height
    if need_h and not v_first:  # the horizontal pass reads only the rows the vertical pass will
        first_row, last_row = int(v_bounds[0, 0]), int(v_bounds[-1, 0] + v_bounds[-1, 1])
        v_bounds = v_bounds - np.array([first_row, 0], dtype=np.int32)
    h_bounds, h_weights = coefficients(width, x0, x1, out_w, resample) if need_h else (v_bounds[:0], v_weights[:0])
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    _resample.resample(
        image, height, width, out, out_h, out_w, first_row, last_row, need_h, need_v, v_first,
        h_bounds, h_weights, h_weights.shape[-1] if need_h else 0,
        v_bounds, v_weights, v_weights.shape[-1],
    )  # fmt: skip
    return out


def _agrees_with_pillow() -> bool:
    """The compiled passes give Pillow's bytes here: a few small images through every branch (each pass alone, both
    orders, a box), against the installed Pillow. A Pillow whose resize changed again turns the native path off."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    cases = [((29, 20), None), ((40, 37), None), ((19, 31), None), ((45, 12), None), ((13, 9), (2.5, 3.25, 27.0, 30.5))]
    for resample in FILTERS:
        for size, box in cases:
            expected = np.asarray(Image.fromarray(image).resize(size, resample, box=box))
            single = _single_box(box, image.shape[1], image.shape[0])
            if not np.array_equal(_native_resize(image, size[0], size[1], single, resample), expected):
                return False
    return True


def native_enabled() -> bool:
    """Whether :func:`resize` runs the compiled passes in this process."""
    return _native


def configure(enabled: bool) -> bool:
    """Use the compiled passes when ``enabled`` (``ServingSettings.native_resample``) and they are usable here;
    whether they now are."""
    global _native
    _native = enabled and _usable
    return _native


_PILLOW_13 = _pillow_major() >= 13
_usable = _resample is not None and _agrees_with_pillow()  # compiled here, and Pillow's bytes with this Pillow
_native = _usable
