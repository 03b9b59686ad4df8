"""benchmarks/resample.py: Pillow switched in and back, archives compared crop by crop, the report rendered."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import resample as bench
from services.models import resample
from tests.unit.fakes import tar_archive


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_pillow_only_switches_the_compiled_passes_off_and_back_on() -> None:
    assert resample.native_enabled()
    with bench.pillow_only():
        assert not resample.native_enabled()
    assert resample.native_enabled()


def test_same_bytes_crops_every_jpeg_both_ways(tmp_path: Path) -> None:
    tar_archive(tmp_path / "tiny-imagenet-200" / "val.tar.gz", {"val/images/a.JPEG": _jpeg(0, (64, 64))})
    tar_archive(tmp_path / "coco128" / "coco128.tar.gz", {"images/a.jpg": _jpeg(1, (300, 200)), "x.txt": b"0"})
    assert bench.same_bytes(tmp_path) == {
        "tiny-imagenet-200/val.tar.gz": {"images": 1, "differ": 0},
        "coco128/coco128.tar.gz": {"images": 1, "differ": 0},
    }


def test_same_bytes_counts_a_difference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tar_archive(tmp_path / "coco128" / "coco128.tar.gz", {"images/a.jpg": _jpeg(2, (300, 200))})
    real = resample._native_resize
    monkeypatch.setattr(resample, "_native_resize", lambda *args: real(*args) ^ 1)
    assert bench.same_bytes(tmp_path)["coco128/coco128.tar.gz"]["differ"] == 1


def test_the_committed_report_is_its_figures_rendered() -> None:
    report = Path(bench.REPO) / "benchmarks" / "reports" / "resample.md"
    results = json.loads(report.with_suffix(".json").read_text())
    assert report.read_text() == bench.render(results, "python benchmarks/resample.py")
    assert all(c["differ"] == 0 for c in results["same_bytes"].values())
    assert sum(c["images"] for c in results["same_bytes"].values()) == 10_128


def test_run_refuses_without_the_compiled_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_native", False)
    with pytest.raises(SystemExit, match="not built"):
        bench.run(4, None)
