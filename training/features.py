"""Run the frozen trunk once per image view and keep its outputs on disk.

With stem..blocks[4] frozen, the trunk costs most of a forward pass and never changes,
so each train image is pushed through it ``views`` times (view 0 plain, the others
augmented) and training reads the stored 112 x 14 x 14 maps. On this 2-core CPU that
is about 100 img/s through the trunk once, then about 95 img/s per epoch through the
tail instead of about 20 img/s end to end (TECHNICAL.md, "Fine-tuning").

The cache is a float16 ``.npy`` memory map. Its folder name hashes everything that
changes its contents; an interrupted build resumes from ``progress.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.data.augment import eval_transform, train_transform
from training.data.datasets import ImageDataset
from training.data.tiny_imagenet import Sample
from training.modules.lite0_net import Trunk

log = logging.getLogger(__name__)


def cache_key(samples: Sequence[Sample], **settings: object) -> str:
    """A short hash of the sample list (paths and labels) and the settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for sample in samples:
        digest.update(f"{sample.path.name}:{sample.label};".encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_cache(
    trunk: Trunk,
    samples: Sequence[Sample],
    folder: Path,
    *,
    views: int,
    image_size: int,
    strength: float,
    seed: int,
    batch_size: int = 64,
    num_workers: int = 0,
    bf16: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Trunk outputs for every sample and view, as ``(features, labels)``.

    Returns:
        A read-only memory map ``views x N x C x H x W`` (float16) and the labels (int64).
    """
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    progress_file, features_file = folder / "progress.json", folder / "features.npy"
    done = json.loads(progress_file.read_text()) if progress_file.exists() else {}
    if done.get("complete"):
        return np.load(features_file, mmap_mode="r"), labels
    probe = trunk(torch.zeros(1, 3, image_size, image_size))
    shape = (views, len(samples), *probe.shape[1:])
    mode = "r+" if features_file.exists() else "w+"
    store = np.lib.format.open_memmap(features_file, mode=mode, dtype=np.float16, shape=shape)
    trunk = trunk.to(memory_format=torch.channels_last)
    for view in range(views):
        start = int(done.get(str(view), 0))
        if start >= len(samples):
            continue
        transform = (
            eval_transform(image_size)
            if view == 0
            else train_transform(image_size, seed=seed + view, strength=strength)
        )
        # One worker at most: the augmentation stream is seeded per process.
        loader = DataLoader(
            ImageDataset(samples[start:], transform), batch_size=batch_size, num_workers=min(num_workers, 1)
        )
        row = start
        for images, _ in tqdm(loader, desc=f"trunk features, view {view + 1}/{views}", unit="batch"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = trunk(images.to(memory_format=torch.channels_last))
            store[view, row : row + len(out)] = out.float().numpy().astype(np.float16)
            row += len(out)
            if row % (batch_size * 50) < batch_size:
                store.flush()
                progress_file.write_text(json.dumps({**done, str(view): row}))
        done[str(view)] = row
        store.flush()
        progress_file.write_text(json.dumps(done))
    progress_file.write_text(json.dumps({**done, "complete": True}))
    del store
    log.info("feature cache ready", extra={"folder": str(folder), "shape": list(shape)})
    return np.load(features_file, mmap_mode="r"), labels
