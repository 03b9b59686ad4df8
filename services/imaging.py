"""Decode and validate uploaded images before any model runs.

Checks, in order: byte size (413), real format against the allowed set and the declared
content type (415), pixel count before decoding so decompression bombs never expand
(413), corrupt or truncated data (400). Then the first frame is taken, EXIF orientation
applied and every mode converted to 8-bit RGB.

Pillow reads every header and decides every error. A complete RGB or grey JPEG, the common upload, is decoded by
libjpeg-turbo (simplejpeg) straight into an RGB array: the same pixels as Pillow's decode (the same library and
settings; tests/unit/services/test_imaging_jpeg.py) for ~1.3x less CPU, since Pillow decodes into its own buffer and
copies that into NumPy through a Python loop (benchmarks/reports/decode.md).
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kernel.errors import ImageTooLarge, InvalidImage, PayloadTooLarge, UnsupportedMediaType

# Pillow format name -> the content types a client may declare for it.
ALLOWED_FORMATS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    # Multi-picture JPEG: what phones and cameras write when they add a depth map or preview.
    "MPO": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "PNG": frozenset({"image/png"}),
    "WEBP": frozenset({"image/webp"}),
    "BMP": frozenset({"image/bmp", "image/x-bmp", "image/x-ms-bmp"}),
    "TIFF": frozenset({"image/tiff", "image/tif"}),
    "GIF": frozenset({"image/gif"}),
}
# Declared types that say nothing about the format: the bytes decide.
GENERIC_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_BACKGROUND = (255, 255, 255)
# Magic numbers of the allowed formats: such bytes that Pillow cannot open are corrupt, not foreign.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


# EXIF orientations that turn the stored image a quarter: its width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
_JPEG_END = b"\xff\xd9"  # EOI: a JPEG without it at the end is truncated (or carries a trailer) and goes to Pillow
# EXIF orientation -> the array operation that makes the image upright: Pillow's ImageOps.exif_transpose, on H x W x C.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],  # ROTATE_270 (a quarter turn clockwise)
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # TRANSVERSE
    8: lambda a: a.transpose(1, 0, 2)[::-1],  # ROTATE_90 (a quarter turn counter-clockwise)
}


@dataclass(frozen=True)
class DecodeFloor:
    """The least a model needs of a photo: its shorter or longer side in pixels (services/models/catalogue.py).

    A JPEG larger than that by 2x, 4x or 8x is decoded at that reduced scale by libjpeg's DCT scaling (Pillow's
    ``draft``): a 12-megapixel photo for a 224-px classifier decodes 1/8 of its pixels. The model still resizes
    what it gets to its input, so it never sees fewer pixels than it uses.
    """

    side: Literal["shorter", "longer"]
    pixels: int

    def reduction(self, width: int, height: int) -> int:
        """The largest of 8, 4, 2 (else 1) that keeps the side at least ``pixels`` long."""
        side = min(width, height) if self.side == "shorter" else max(width, height)
        return next((s for s in (8, 4, 2) if side // s >= self.pixels), 1)


@dataclass(frozen=True)
class DecodedImage:
    """A validated image as 8-bit RGB pixels plus what the logs and results need.

    ``width`` and ``height`` are the image's as uploaded (after EXIF orientation); the pixels are that size divided
    by ``reduction`` when the JPEG was decoded at a reduced scale (``DecodeFloor``).
    """

    pixels: np.ndarray  # H x W x 3, uint8, RGB
    format: str
    sha256: str
    byte_size: int
    reduction: int = 1
    source_size: tuple[int, int] | None = None  # (width, height) as uploaded; None: the pixels' size

    @property
    def width(self) -> int:
        return self.source_size[0] if self.source_size else int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return self.source_size[1] if self.source_size else int(self.pixels.shape[0])

    def coordinates(self) -> dict[str, Any]:
        """What a model that answers in image coordinates needs to map them back to the upload (DetectParams)."""
        if self.reduction == 1:
            return {}
        return {"reduction": self.reduction, "source_size": (self.width, self.height)}


def decode_image(
    data: bytes,
    *,
    declared_type: str | None,
    max_bytes: int,
    max_pixels: int,
    floor: DecodeFloor | None = None,
) -> DecodedImage:
    """Validate ``data`` and decode it to RGB.

    Args:
        data: The uploaded bytes.
        declared_type: The content type the client declared for the part, if any.
        max_bytes: Largest accepted upload.
        max_pixels: Largest accepted width * height.
        floor: What the model that will read the pixels needs; a JPEG well above it decodes at a reduced scale.
            None: full size.

    Raises:
        PayloadTooLarge, ImageTooLarge, UnsupportedMediaType, InvalidImage.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data:
        raise InvalidImage("the image part is empty")
    image = _open(data)
    real_format = str(image.format)
    _check_format(image.format, declared_type)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width == 0 or height == 0:
        raise InvalidImage("image has no pixels")
    reduction = floor.reduction(width, height) if floor is not None and real_format in ("JPEG", "MPO") else 1
    fast = _decode_jpeg(data, image, reduction) if real_format == "JPEG" else None
    if fast is not None:
        pixels, quarter_turn = fast
    else:
        pixels, quarter_turn = _decode_with_pillow(image, reduction)
    return DecodedImage(
        pixels=pixels,
        format=real_format,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
        reduction=reduction,
        source_size=None if reduction == 1 else ((height, width) if quarter_turn else (width, height)),
    )


def _decode_with_pillow(image: Image.Image, reduction: int) -> tuple[np.ndarray, bool]:
    """Any allowed image: its first frame, upright, as RGB; and whether it turned a quarter (its sides swapped)."""
    width, height = image.size
    try:
        image.seek(0)  # GIF, multi-page TIFF: the first frame
        if reduction > 1:
            # Pillow picks the largest of 1/8, 1/4, 1/2 within the asked size: exactly 1/reduction here.
            image.draft(image.mode, (width // reduction, height // reduction))
        image.load()
        quarter_turn = reduction > 1 and image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS
        ImageOps.exif_transpose(image, in_place=True)  # in place: otherwise a full copy even when upright
        rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), quarter_turn


def _decode_jpeg(data: bytes, image: Image.Image, reduction: int) -> tuple[np.ndarray, bool] | None:
    """A complete RGB or grey JPEG decoded by libjpeg-turbo (simplejpeg) into an upright RGB array at 1/reduction
    scale, and whether it turned a quarter; None where Pillow decodes it instead: other modes (CMYK), data that does
    not end at the end-of-image marker (truncated, or a trailer after the image), anything libjpeg decodes only with
    a warning (corrupt data: strict mode), a size other than Pillow's. Pillow then decides, and its errors are the
    ones a caller sees."""
    turbo = _simplejpeg()
    if turbo is None or image.mode not in ("RGB", "L") or not data.endswith(_JPEG_END):
        return None
    width, height = image.size
    expected = (-(-height // reduction), -(-width // reduction), 3)  # libjpeg's scaled size: the sides rounded up
    try:
        array = turbo.decode_jpeg(
            data, colorspace="RGB", min_factor=reduction, min_height=expected[0], min_width=expected[1], strict=True
        )
    except ValueError:
        return None
    if array.shape != expected or array.dtype != np.uint8:
        return None
    orientation = image.getexif().get(_EXIF_ORIENTATION)
    upright = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None  # as exif_transpose: else upright
    return (array if upright is None else np.ascontiguousarray(upright(array))), orientation in _QUARTER_TURNS


@functools.cache
def _simplejpeg() -> ModuleType | None:
    """simplejpeg (libjpeg-turbo into NumPy), imported on first use; None where it is not installed: Pillow then
    decodes everything."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a requirement of the product; optional for a slimmer install
        return None
    return simplejpeg


def preload_decoders() -> None:
    """Import the decoders now, in a server's start-up, not on its first upload (Pillow's plugins: ~6 ms)."""
    Image.preinit()
    _simplejpeg()


def header_pixels(data: bytes) -> int | None:
    """Width x height as the image's header states it, nothing decoded (tens of microseconds); None where the header
    cannot be read (:func:`decode_image` says why)."""
    try:
        width, height = _open(data).size
    except (ImageTooLarge, InvalidImage, UnsupportedMediaType):
        return None
    return width * height


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # We check the pixel count ourselves, before decoding, with our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise InvalidImage("image header is corrupt or truncated") from exc
        raise UnsupportedMediaType(
            "the data is not an image in a supported format (JPEG, PNG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"image header is corrupt: {exc}") from exc


def _check_format(real: str | None, declared_type: str | None) -> None:
    if real not in ALLOWED_FORMATS:
        raise UnsupportedMediaType(f"image format {real} is not supported; send JPEG, PNG, WebP, BMP, TIFF or GIF")
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared in GENERIC_CONTENT_TYPES:
        return
    if declared not in ALLOWED_FORMATS[real]:
        raise UnsupportedMediaType(f"declared content type {declared} does not match the image data ({real})")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's own conversion is correct for these.
    return image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit or 32-bit grey to 8 bits by its nominal range, not by clipping."""
    array = np.asarray(image)
    if image.mode.startswith("I;16") or (
        image.mode == "I" and array.size and array.min() >= 0 and array.max() <= 0xFFFF
    ):
        scaled = (array.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        values = array.astype(np.float64)
        low, high = float(values.min()), float(values.max())
        span = high - low if high > low else 1.0
        scaled = ((values - low) / span * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")
