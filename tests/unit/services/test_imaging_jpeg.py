"""JPEG uploads decoded by libjpeg-turbo into NumPy (simplejpeg): Pillow's pixels, Pillow's verdicts, else Pillow."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from kernel.errors import InvalidImage
from services import imaging
from services.imaging import DecodedImage, DecodeFloor, decode_image
from tests.unit.fakes import image_bytes


def decode(data: bytes, floor: DecodeFloor | None = None) -> DecodedImage:
    return decode_image(data, declared_type="image/jpeg", max_bytes=1 << 26, max_pixels=40_000_000, floor=floor)


def jpeg(size: tuple[int, int] = (451, 300), mode: str = "RGB", orientation: int = 1, **save: Any) -> bytes:
    picture = Image.fromarray(skdata.astronaut()).resize(size, Image.Resampling.LANCZOS)
    if mode != "RGB":
        picture = picture.convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(picture, "JPEG", exif=exif.tobytes(), **{"quality": 90, **save})


def by_pillow(data: bytes, reduction: int = 1) -> tuple[np.ndarray, bool]:
    return imaging._decode_with_pillow(Image.open(io.BytesIO(data)), reduction)


def fast(data: bytes, reduction: int = 1) -> tuple[np.ndarray, bool] | None:
    return imaging._decode_jpeg(data, Image.open(io.BytesIO(data)), reduction)


@pytest.fixture
def pillow_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Pillow decodes pixels."""

    def refuse(image: Image.Image, reduction: int) -> Any:
        raise AssertionError("Pillow decoded the image")

    monkeypatch.setattr(imaging, "_decode_with_pillow", refuse)


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_the_same_pixels_as_pillow(subsampling: int, progressive: bool, mode: str, reduction: int) -> None:
    data = jpeg((333, 217), mode, subsampling=subsampling, progressive=progressive)
    decoded = fast(data, reduction)
    assert decoded is not None
    assert np.array_equal(decoded[0], by_pillow(data, reduction)[0])
    assert decoded[0].shape == (-(-217 // reduction), -(-333 // reduction), 3)
    assert decoded[0].dtype == np.uint8 and decoded[0].flags.c_contiguous


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("reduction", [1, 2])
def test_every_exif_orientation_turns_as_pillow_turns_it(orientation: int, reduction: int) -> None:
    data = jpeg((161, 97), orientation=orientation)
    pixels, quarter_turn = fast(data, reduction) or (None, None)
    expected, pillow_quarter_turn = by_pillow(data, reduction)
    assert pixels is not None and pixels.flags.c_contiguous
    assert np.array_equal(pixels, expected)
    assert quarter_turn == (orientation in (5, 6, 7, 8))
    if reduction > 1:  # Pillow's path only works it out where the reported size needs it
        assert quarter_turn == pillow_quarter_turn


def test_decode_image_takes_the_fast_path_and_reports_the_upload(pillow_refused: None) -> None:
    data = jpeg((1000, 800), orientation=6)
    decoded = decode(data, DecodeFloor("shorter", 224))
    assert decoded.reduction == 2
    assert decoded.pixels.shape == (500, 400, 3)  # upright: a quarter turn
    assert (decoded.width, decoded.height) == (800, 1000)
    assert decoded.format == "JPEG" and decoded.byte_size == len(data)


@pytest.mark.parametrize(
    "case",
    ["truncated", "trailer", "cmyk", "corrupt"],
)
def test_pillow_decides_what_libjpeg_would_only_decode_with_a_warning_or_not_at_all(case: str) -> None:
    data = jpeg((200, 150), "CMYK" if case == "cmyk" else "RGB")
    if case == "truncated":
        data = data[: len(data) // 2]
    elif case == "trailer":
        data += b"camera maker's trailer"
    elif case == "corrupt":
        # Bytes overwritten just before the end-of-image marker: libjpeg warns "N extraneous bytes before marker".
        data = data[:-40] + b"\x00" * 38 + data[-2:]
    assert fast(data) is None
    if case in ("trailer", "cmyk"):
        assert np.array_equal(decode(data).pixels, by_pillow(data)[0])


def test_a_truncated_jpeg_keeps_pillows_error() -> None:
    data = jpeg()
    with pytest.raises(InvalidImage, match="truncated"):
        decode(data[: len(data) // 2])


def test_random_corruption_gets_the_same_verdict_with_and_without_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    original = jpeg((640, 480))
    declined, refused = 0, 0
    for _ in range(150):
        data = bytearray(original)
        for at in rng.integers(len(data) // 4, len(data) - 2, size=5):
            data[at] = int(rng.integers(0, 256))
        declined += fast(bytes(data)) is None
        verdicts = []
        for turbo in (imaging._simplejpeg(), None):
            monkeypatch.setattr(imaging, "_simplejpeg", lambda turbo=turbo: turbo)
            try:
                verdicts.append(hashlib.sha256(decode(bytes(data)).pixels.tobytes()).hexdigest())
            except InvalidImage as exc:
                verdicts.append(f"error: {exc.public_message}")
        assert verdicts[0] == verdicts[1]
        refused += verdicts[0].startswith("error")
    assert refused > 0  # some corruptions Pillow refuses (libjpeg only warns of them: the fast path declines them)
    assert declined > refused  # and some it declines that Pillow decodes all the same


def test_without_simplejpeg_pillow_decodes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg(orientation=3)
    expected = decode(data).pixels
    monkeypatch.setattr(imaging, "_simplejpeg", lambda: None)
    assert fast(data) is None
    assert np.array_equal(decode(data).pixels, expected)
