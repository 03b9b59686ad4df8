"""Reference profiles from real images: the model version run in this process, as it is served.

The release gate calls :func:`build_reference_for` with the validation images it already holds; the command
line (``python -m services.drift reference``) uses the fixed Tiny-ImageNet split below.

The split of Tiny-ImageNet val (10,000 images, ``val_<n>.JPEG``): images whose number ``n`` is even form the
reference pool (a seeded sample of at most 2,000 of them is the profile), odd ones are held out for the drift
evaluation (benchmarks/drift.py), so no evaluation window contains a reference image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from services.config import ServingSettings, get_settings
from services.drift.features import request_features
from services.drift.reference import ReferenceProfile, build_reference
from services.imaging import decode_image
from services.index.build_gallery import IMAGE_SUFFIXES, Record, tiny_imagenet_val
from services.models.registry import ModelPool
from services.models.worker import build_pool

log = logging.getLogger(__name__)
BATCH = 16


def val_number(filename: str) -> int:
    """The ``n`` of ``val_<n>.JPEG``."""
    return int(filename.rsplit("_", 1)[1].split(".")[0])


def tiny_imagenet_split(settings: ServingSettings, *, held_out: bool) -> Iterator[Record]:
    """The reference pool (even ``n``) or the held-out half (odd ``n``) of Tiny-ImageNet val, in ``n`` order."""
    root = settings.datasets_mirror_dir / "tiny-imagenet-200"
    for data, meta in tiny_imagenet_val(root):
        if val_number(str(meta["filename"])) % 2 == int(held_out):
            yield data, meta


def decode(data: bytes, settings: ServingSettings) -> np.ndarray:
    """Bytes -> RGB pixels exactly as the api decodes an upload."""
    image = decode_image(
        data, declared_type=None, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
    )
    return image.pixels


def features_for(
    pool: ModelPool, version: str, images: Iterable[np.ndarray], batch: int = BATCH
) -> list[dict[str, Any]]:
    """``request_features()`` of each image as ``version`` answers it (INT8 first, as served), in order."""
    params_type = next(m for v in pool.versions.values() for m in v.models.values()).params_type
    rows: list[dict[str, Any]] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        predictions = pool.infer(pending, [params_type()] * len(pending), version)
        rows.extend(request_features(p, q) for p, q in zip(pending, predictions, strict=True))
        pending.clear()

    for pixels in images:
        pending.append(pixels)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return rows


def build_reference_for(
    model: str,
    version: str,
    images: Iterable[np.ndarray],
    *,
    source: str,
    pool: ModelPool | None = None,
    settings: ServingSettings | None = None,
    max_samples: int = 2000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """The reference profile of ``model`` ``version`` from validation images (RGB uint8 arrays).

    Args:
        model: The model's name in the store (``classifier``).
        version: The version to profile; it must be in the store (or in ``pool``).
        images: Decoded validation images; only the first ``max_samples`` are run.
        source: A description of the images, kept in the profile.
        pool: The loaded model; None: every stored version of ``model`` is loaded from the model store.
        settings: Serving settings (runtime threads, providers); None: the environment's.
        max_samples: Images in the profile at most.
        seed: Seed kept for the profile's own subsampling.
        extra: Provenance kept in the profile.
    """
    settings = settings or get_settings()
    pool = pool or build_pool(model, settings)
    limited = (pixels for i, pixels in enumerate(images) if i < max_samples)
    rows = features_for(pool, version, limited)
    log.info("reference features computed", extra={"model": model, "version": version, "images": len(rows)})
    return build_reference(model, version, rows, source=source, max_samples=max_samples, seed=seed, extra=extra)


def tiny_imagenet_reference(
    model: str,
    version: str,
    *,
    limit: int = 2000,
    seed: int = 0,
    settings: ServingSettings | None = None,
    pool: ModelPool | None = None,
) -> ReferenceProfile:
    """The profile from the reference pool of Tiny-ImageNet val: a seeded sample of ``limit`` of its images.

    The profile's ``extra["files"]`` lists the images, so the drift benchmark can keep its tuning windows apart.
    """
    settings = settings or get_settings()
    records = list(tiny_imagenet_split(settings, held_out=False))
    chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=min(limit, len(records)), replace=False))
    images = (decode(records[int(i)][0], settings) for i in chosen)
    return build_reference_for(
        model,
        version,
        images,
        source=f"Tiny-ImageNet-200 val, even image numbers (the reference pool): {len(chosen)} of {len(records)}",
        pool=pool,
        settings=settings,
        max_samples=limit,
        seed=seed,
        extra={
            "split": "val_<n>.JPEG with n even",
            "sample_seed": seed,
            "files": [records[int(i)][1]["filename"] for i in chosen],
        },
    )


def folder_reference(
    model: str,
    version: str,
    folder: Path,
    *,
    limit: int = 2000,
    seed: int = 0,
    settings: ServingSettings | None = None,
    pool: ModelPool | None = None,
) -> ReferenceProfile:
    """The profile from the images of ``folder`` (recursively): a seeded sample of ``limit`` of them.

    For models whose validation data is not Tiny-ImageNet (the detector: COCO128's train2017, keeping val2017 for
    its evaluation).
    """
    settings = settings or get_settings()
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(files), size=min(limit, len(files)), replace=False))
    images = (decode(files[int(i)].read_bytes(), settings) for i in chosen)
    return build_reference_for(
        model,
        version,
        images,
        source=f"{folder.name}: {len(chosen)} of {len(files)} images",
        pool=pool,
        settings=settings,
        max_samples=limit,
        seed=seed,
        extra={"folder": folder.name, "sample_seed": seed, "files": [files[int(i)].name for i in chosen]},
    )
