"""Decoding every Pillow mode to 8-bit RGB: grey, alpha on white, palettes, CMYK, 16- and 32-bit, floats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.imaging import to_rgb
from tests.unit.fakes import image_bytes
from tests.unit.services.test_imaging import decode


def test_decode_grey_l_png_repeats_channel() -> None:
    data = image_bytes(Image.new("L", (3, 2), 77), "PNG")
    pixels = decode(data).pixels
    assert pixels.shape == (2, 3, 3)
    assert (pixels == 77).all()


def test_decode_la_png_composites_alpha_on_white() -> None:
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (40, 255))
    image.putpixel((1, 0), (40, 0))
    pixels = decode(image_bytes(image, "PNG")).pixels
    assert pixels[0, 0].tolist() == [40, 40, 40]
    assert pixels[0, 1].tolist() == [255, 255, 255]


def test_decode_rgba_png_composites_alpha_on_white() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (10, 20, 30, 255))
    image.putpixel((1, 0), (10, 20, 30, 0))
    image.putpixel((2, 0), (10, 20, 30, 128))
    pixels = decode(image_bytes(image, "PNG")).pixels.astype(int)
    assert pixels[0, 0].tolist() == [10, 20, 30]
    assert pixels[0, 1].tolist() == [255, 255, 255]
    # Half transparent: half way to white.
    expected = [round(c * 128 / 255 + 255 * 127 / 255) for c in (10, 20, 30)]
    assert np.abs(pixels[0, 2] - expected).max() <= 1


def test_decode_palette_png_without_transparency_uses_palette_colours() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    pixels = decode(image_bytes(image, "PNG")).pixels
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [0, 0, 255]


def test_decode_palette_png_with_transparent_index_becomes_white() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    data = image_bytes(image, "PNG", transparency=1)
    pixels = decode(data).pixels
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [255, 255, 255]


def test_decode_cmyk_tiff_converts_to_rgb() -> None:
    data = image_bytes(Image.new("CMYK", (4, 4), (255, 0, 0, 0)), "TIFF")
    pixels = decode(data, "image/tiff").pixels
    assert (pixels == [0, 255, 255]).all()


def test_decode_cmyk_jpeg_converts_to_rgb() -> None:
    data = image_bytes(Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG", quality=100)
    pixels = decode(data, "image/jpeg").pixels.astype(int)
    assert np.abs(pixels - [255, 0, 255]).max() <= 3


def test_decode_16_bit_png_scales_by_nominal_range() -> None:
    grey = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert grey.mode == "I;16"
    pixels = decode(image_bytes(grey, "PNG")).pixels
    assert pixels[0, :, 0].tolist() == [0, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_decode_bilevel_png_maps_to_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 1)
    pixels = decode(image_bytes(image, "PNG")).pixels
    assert pixels[0, :, 0].tolist() == [0, 255]


def test_decode_32_bit_integer_tiff_in_16_bit_range_scales_by_nominal_range() -> None:
    image = Image.fromarray(np.array([[0, 256, 65535]], dtype=np.int32))
    assert image.mode == "I"
    pixels = decode(image_bytes(image, "TIFF")).pixels
    assert pixels[0, :, 0].tolist() == [0, 1, 255]


def test_decode_32_bit_integer_tiff_beyond_16_bits_is_stretched() -> None:
    image = Image.fromarray(np.array([[-100, 0, 99_900]], dtype=np.int32))
    pixels = decode(image_bytes(image, "TIFF")).pixels
    assert pixels[0, :, 0].tolist() == [0, 0, 255]  # (0 + 100) / 100000 * 255 = 0.255 -> 0


def test_decode_float_tiff_is_stretched_to_full_range() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert image.mode == "F"
    pixels = decode(image_bytes(image, "TIFF")).pixels
    assert pixels[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_to_rgb_scales_other_16_bit_byte_orders(mode: str) -> None:
    image = Image.new(mode, (2, 1))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 512)
    assert np.asarray(to_rgb(image))[0, :, 1].tolist() == [255, 2]


def test_to_rgb_constant_float_image_does_not_divide_by_zero() -> None:
    image = Image.fromarray(np.full((2, 2), 3.5, dtype=np.float32))
    assert np.asarray(to_rgb(image)).shape == (2, 2, 3)


def test_to_rgb_palette_alpha_mode_composites_on_white() -> None:
    image = Image.new("PA", (1, 1))
    image.putpalette([9, 8, 7] * 256)
    image.putpixel((0, 0), (0, 0))
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [255, 255, 255]


def test_to_rgb_returns_rgb_image_unchanged() -> None:
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(image) is image
