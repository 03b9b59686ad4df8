"""The images and features of the drift benchmark (benchmarks/drift.py): splits, shifts, a feature cache.

Features are computed once per image and shift with the real classifier in process (INT8, as served) and cached
under ``<data_dir>/drift-bench/`` (gitignored), so windows are evaluated many times at no model cost.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from services.config import ServingSettings
from services.drift.build import decode, features_for, tiny_imagenet_split
from services.models.registry import ModelPool

Shift = Callable[[np.ndarray], np.ndarray]


def _pil(shift: Callable[[Image.Image], Image.Image]) -> Shift:
    return lambda pixels: np.asarray(shift(Image.fromarray(pixels)).convert("RGB"), dtype=np.uint8)


def _jpeg(quality: int) -> Shift:
    def encode(pixels: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.uint8)

    return encode


SHIFTS: dict[str, Shift] = {
    "none": lambda pixels: pixels,
    "darkened": _pil(lambda im: ImageEnhance.Brightness(im).enhance(0.5)),
    "blurred": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(radius=2))),
    "grey": _pil(lambda im: im.convert("L")),
    # Milder versions, for the sensitivity rows; and a re-encoding that is not a shift of the content.
    "darkened x0.8": _pil(lambda im: ImageEnhance.Brightness(im).enhance(0.8)),
    "blurred r1": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(radius=1))),
    "jpeg q75": _jpeg(75),
    # Photos of another kind at Tiny-ImageNet's size: the size tests cannot see them, the content tests must.
    "64x64": _pil(lambda im: im.resize((64, 64), Image.Resampling.BICUBIC)),
}


class FeatureCache:
    """``request_features()`` rows per named image set, kept as gzipped JSON under ``folder``."""

    def __init__(self, folder: Path, pool: Callable[[], ModelPool], version: str) -> None:
        self.folder = folder
        self.pool = pool
        self.version = version
        self._pool: ModelPool | None = None

    def rows(self, name: str, images: Callable[[], list[np.ndarray]]) -> list[dict[str, Any]]:
        """The cached rows of ``name``, or the model's answers to ``images()``, cached."""
        path = self.folder / f"{self.version}-{name.replace(' ', '_')}.json.gz"
        if path.is_file():
            return list(json.loads(gzip.decompress(path.read_bytes())))
        if self._pool is None:
            self._pool = self.pool()
        rows = features_for(self._pool, self.version, images())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps(rows).encode()))
        return rows


def tiny_split(settings: ServingSettings, *, held_out: bool, exclude: set[str], size: int, seed: int) -> list[bytes]:
    """A seeded sample of ``size`` images of one half of Tiny-ImageNet val, minus the files in ``exclude``."""
    records = [
        data for data, meta in tiny_imagenet_split(settings, held_out=held_out) if meta["filename"] not in exclude
    ]
    chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=min(size, len(records)), replace=False))
    return [records[int(i)] for i in chosen]


def tiny_train(settings: ServingSettings, *, per_class: int) -> list[bytes]:
    """The first ``per_class`` train images of each class (the classifier was fine-tuned on these)."""
    import tarfile

    root = settings.datasets_mirror_dir / "tiny-imagenet-200"
    found: list[bytes] = []
    counts: dict[str, int] = {}
    for archive_path in sorted(root.glob("train-*.tar.gz")):
        with tarfile.open(archive_path) as archive:
            for member in archive:
                if not member.isfile() or not member.name.endswith(".JPEG"):
                    continue
                wnid = member.name.split("/")[-3]
                if counts.get(wnid, 0) >= per_class:
                    continue
                handle = archive.extractfile(member)
                if handle is not None:
                    counts[wnid] = counts.get(wnid, 0) + 1
                    found.append(handle.read())
    return found


def coco_photos(settings: ServingSettings) -> list[bytes]:
    """All 256 COCO photos the mirror has: COCO128 (train2017) and the held-out first 128 of val2017."""
    root = settings.data_dir / "coco128"
    if not (root / "images" / "val2017").is_dir():
        subprocess.run(
            ["sh", str(settings.datasets_mirror_dir / "coco128" / "unpack.sh"), str(settings.data_dir)], check=True
        )
    return [p.read_bytes() for p in sorted((root / "images").glob("*/*.jpg"))]


def decoded(data: list[bytes], settings: ServingSettings, shift: Shift) -> list[np.ndarray]:
    """Decode as the api does, then shift."""
    return [shift(decode(item, settings)) for item in data]
