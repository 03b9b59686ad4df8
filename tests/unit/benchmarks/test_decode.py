"""benchmarks/decode.py: both decode paths timed, Pillow restored after, archives compared pixel by pixel."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import decode
from services import imaging
from tests.unit.fakes import tar_archive


def _jpeg(seed: int, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_pillow_only_switches_the_fast_path_off_and_back_on() -> None:
    found = imaging._simplejpeg()
    assert found is not None
    with decode.pillow_only():
        assert imaging._simplejpeg() is None
    assert imaging._simplejpeg() is found


def test_same_pixels_reads_every_jpeg_of_eachtar_archive(tmp_path: Path) -> None:
    members = {
        "val/images/val_0.JPEG": _jpeg(0),
        "val/images/val_1.JPEG": _jpeg(1, "L"),
        "val/val_annotations.txt": b"val_0.JPEG\tn01443537\n",
    }
    tar_archive(tmp_path / "tiny-imagenet-200" / "val.tar.gz", members)
    tar_archive(tmp_path / "coco128" / "coco128.tar.gz", {"images/a.jpg": _jpeg(2), "labels/a.txt": b"0 0.5 0.5 1 1\n"})
    counts = decode.same_pixels(tmp_path)
    assert counts == {
        "tiny-imagenet-200/val.tar.gz": {"images": 2, "fast_path": 2, "differ": 0},
        "coco128/coco128.tar.gz": {"images": 1, "fast_path": 1, "differ": 0},
    }


def test_same_pixels_counts_a_difference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tar_archive(tmp_path / "coco128" / "coco128.tar.gz", {"images/a.jpg": _jpeg(3)})
    real = imaging._decode_jpeg

    def off_by_one(data: bytes, image: Image.Image, reduction: int) -> tuple[np.ndarray, bool] | None:
        decoded = real(data, image, reduction)
        return None if decoded is None else (decoded[0] ^ 1, decoded[1])

    monkeypatch.setattr(imaging, "_decode_jpeg", off_by_one)
    assert decode.same_pixels(tmp_path)["coco128/coco128.tar.gz"]["differ"] == 1


def test_same_pixels_decodes_each_image_once_each_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tar_archive(tmp_path / "coco128" / "coco128.tar.gz", {"images/a.jpg": _jpeg(4), "images/b.jpg": _jpeg(5, "CMYK")})
    real = imaging._decode_jpeg
    calls: list[str] = []

    def counted(data: bytes, image: Image.Image, reduction: int) -> tuple[np.ndarray, bool] | None:
        if imaging._simplejpeg() is not None:  # the Pillow-only pass asks too, and is told no at once
            calls.append(image.mode)
        return real(data, image, reduction)

    monkeypatch.setattr(imaging, "_decode_jpeg", counted)
    counts = decode.same_pixels(tmp_path)["coco128/coco128.tar.gz"]
    assert counts == {"images": 2, "fast_path": 1, "differ": 0}  # CMYK is Pillow's
    assert calls == ["RGB", "CMYK"]  # libjpeg-turbo tried once per image, not once more to count
    assert imaging._decode_jpeg is counted  # the spy is gone after


def test_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "decode.md"
    assert decode.main(["--calls", "8", "--datasets", str(tmp_path / "none"), "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["photos"]) == 4
    for row in data["photos"].values():
        assert row["pillow"]["cpu_ms"] > 0 and row["fast"]["cpu_ms"] > 0 and row["fast"]["two_threads_wall_ms"] > 0
    text = out.read_text()
    assert "| chelsea 451x300 (classify in peers.md) |" in text and "x | " in text  # a row with its ratio
    assert "Not run: no data sets' mirror folder" in text
    assert imaging._simplejpeg() is not None  # Pillow-only timing left the fast path on
