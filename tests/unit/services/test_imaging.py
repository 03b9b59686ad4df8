"""Upload validation and decoding: every bad-input class, EXIF, frames (Pillow modes: test_imaging_modes.py)."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from kernel.errors import ImageTooLarge, InvalidImage, PayloadTooLarge, ServiceError, UnsupportedMediaType
from services import imaging
from services.imaging import DecodedImage, decode_image
from tests.unit.fakes import image_bytes

MAX_BYTES = 1 << 20
MAX_PIXELS = 1_000_000


def decode(data: bytes, declared_type: str | None = None, **limits: int) -> DecodedImage:
    return decode_image(
        data,
        declared_type=declared_type,
        max_bytes=limits.get("max_bytes", MAX_BYTES),
        max_pixels=limits.get("max_pixels", MAX_PIXELS),
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` and which has no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def noise_rgb(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel data is decoded."""

    def refuse(self: ImageFile.ImageFile) -> Any:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- bad input -------------------------------------------------------------------------------


def test_decode_rejects_payload_over_max_bytes(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "PNG")
    with pytest.raises(PayloadTooLarge) as caught:
        decode(data, max_bytes=len(data) - 1)
    assert caught.value.status_code == 413
    assert str(len(data)) in caught.value.public_message


def test_decode_checks_byte_size_before_format() -> None:
    with pytest.raises(PayloadTooLarge):
        decode(b"not an image at all", max_bytes=5)


def test_decode_accepts_payload_of_exactly_max_bytes(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "PNG")
    assert decode(data, max_bytes=len(data)).byte_size == len(data)


def test_decode_rejects_empty_data() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode(b"")
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "data",
    [b"hello, this is plain text" * 4, b"%PDF-1.7\n" + bytes(200), bytes(range(256))],
    ids=["text", "pdf", "binary"],
)
def test_decode_rejects_non_image_bytes(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(data)
    assert caught.value.status_code == 415


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX"])
def test_decode_rejects_format_not_allowed(fmt: str) -> None:
    data = image_bytes(Image.new("RGB", (16, 16), (10, 20, 30)), fmt)
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(data)
    assert caught.value.status_code == 415
    assert "not supported" in caught.value.public_message


@pytest.mark.parametrize(
    ("fmt", "declared"),
    [("PNG", "image/jpeg"), ("JPEG", "image/png"), ("GIF", "image/webp"), ("PNG", "text/plain")],
)
def test_decode_rejects_declared_type_that_differs_from_data(fmt: str, declared: str) -> None:
    data = image_bytes(Image.new("RGB", (8, 8)), fmt)
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(data, declared)
    assert caught.value.status_code == 415
    assert "does not match" in caught.value.public_message


@pytest.mark.parametrize(
    "declared",
    [None, "", "application/octet-stream", "binary/octet-stream", "Application/Octet-Stream"],
)
def test_decode_accepts_generic_declared_type(declared: str | None) -> None:
    data = image_bytes(Image.new("RGB", (8, 8)), "PNG")
    assert decode(data, declared).format == "PNG"


@pytest.mark.parametrize(
    ("fmt", "declared"),
    [
        ("JPEG", "image/jpeg"),
        ("JPEG", "image/jpg"),
        ("JPEG", "image/pjpeg"),
        ("PNG", "IMAGE/PNG"),
        ("PNG", "image/png; charset=binary"),
        ("BMP", "image/x-ms-bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_decode_accepts_declared_type_aliases(fmt: str, declared: str) -> None:
    data = image_bytes(Image.new("RGB", (8, 8)), fmt)
    assert decode(data, declared).format == fmt


def test_decode_rejects_decompression_bomb_from_header_without_decoding(no_decoding: None) -> None:
    # 100000 x 100000 declared in 45 bytes: past Pillow's own bomb limit.
    data = png_header_only(100_000, 100_000)
    with pytest.raises(ImageTooLarge) as caught:
        decode(data, max_pixels=40_000_000)
    assert caught.value.status_code == 413


def test_decode_rejects_image_over_max_pixels_without_decoding(no_decoding: None) -> None:
    # A real, cheaply compressed 8000 x 8000 bilevel PNG: under Pillow's limit, over ours.
    data = image_bytes(Image.new("1", (8000, 8000)), "PNG")
    assert len(data) < 20_000
    with pytest.raises(ImageTooLarge) as caught:
        decode(data, max_pixels=40_000_000)
    assert "8000x8000" in caught.value.public_message


def test_decode_accepts_image_of_exactly_max_pixels() -> None:
    data = image_bytes(Image.new("RGB", (20, 10)), "PNG")
    assert decode(data, max_pixels=200).pixels.shape == (10, 20, 3)
    with pytest.raises(ImageTooLarge):
        decode(data, max_pixels=199)


def test_decode_rejects_truncated_jpeg(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "JPEG", quality=95)
    with pytest.raises(InvalidImage) as caught:
        decode(data[: len(data) // 2], "image/jpeg")
    assert caught.value.status_code == 400
    assert "truncated" in caught.value.public_message


def test_decode_rejects_truncated_png(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "PNG")
    with pytest.raises(InvalidImage):
        decode(data[: len(data) // 2], "image/png")


def test_decode_rejects_corrupt_png_pixel_data(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "PNG")
    start = data.index(b"IDAT") + 4
    corrupt = data[:start] + bytes(200) + data[start + 200 :]
    with pytest.raises(InvalidImage) as caught:
        decode(corrupt)
    assert caught.value.status_code == 400


def test_decode_rejects_corrupt_png_header() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    assert "header" in caught.value.public_message


def test_decode_rejects_png_without_pixel_data() -> None:
    with pytest.raises(InvalidImage):
        decode(png_header_only(10, 10))


def test_decode_rejects_image_without_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow 13 refuses zero-sized headers itself; this guards decoders that do not.
    empty = Image.new("RGB", (0, 5))
    empty.format = "PNG"
    monkeypatch.setattr(imaging, "_open", lambda data: empty)
    with pytest.raises(InvalidImage, match="no pixels"):
        decode(b"anything")


def test_decode_rejects_jpeg_cut_inside_header_as_invalid_image(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb, "JPEG")
    with pytest.raises(InvalidImage):
        decode(data[:20], "image/jpeg")


def test_decode_accepts_multi_picture_jpeg_from_cameras() -> None:
    # Phones and cameras append depth maps / previews as MPF pictures; the file is still a JPEG.
    first, second = Image.new("RGB", (16, 16), (200, 10, 10)), Image.new("RGB", (16, 16))
    data = image_bytes(first, "MPO", save_all=True, append_images=[second])
    assert decode(data, "image/jpeg").pixels.shape == (16, 16, 3)


# --- orientation, frames, formats, identity --------------------------------------------------


def test_decode_applies_exif_orientation() -> None:
    # 40 wide x 20 high, left half red, right half blue; Orientation 6 = rotate 90 degrees clockwise.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode(data, "image/jpeg")
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.format == "JPEG"
    top, bottom = decoded.pixels[5, 10].astype(int), decoded.pixels[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_decode_gif_takes_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    decoded = decode(data, "image/gif")
    assert decoded.format == "GIF"
    assert (decoded.pixels == [255, 0, 0]).all()


@pytest.mark.parametrize(
    ("fmt", "declared", "kwargs"),
    [
        ("WEBP", "image/webp", {"lossless": True}),
        ("BMP", "image/bmp", {}),
        ("TIFF", "image/tiff", {}),
        ("PNG", "image/png", {}),
    ],
)
def test_decode_accepts_lossless_formats_pixel_exact(
    noise_rgb: Image.Image, fmt: str, declared: str, kwargs: dict[str, Any]
) -> None:
    decoded = decode(image_bytes(noise_rgb, fmt, **kwargs), declared)
    assert decoded.format == fmt
    np.testing.assert_array_equal(decoded.pixels, np.asarray(noise_rgb))


def test_decode_reports_sha256_byte_size_and_size(noise_rgb: Image.Image) -> None:
    data = image_bytes(noise_rgb.crop((0, 0, 30, 12)), "PNG")
    decoded = decode(data)
    assert decoded.sha256 == hashlib.sha256(data).hexdigest()
    assert decoded.byte_size == len(data)
    assert (decoded.width, decoded.height) == (30, 12)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.flags.c_contiguous


def test_decode_errors_are_service_errors_with_public_messages() -> None:
    for data in (b"", b"x" * 10):
        with pytest.raises(ServiceError) as caught:
            decode(data)
        assert caught.value.public_message
