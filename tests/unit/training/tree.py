"""A small Tiny-ImageNet tree in the original layout, for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Three real wnids (goldfish, European fire salamander, bullfrog): their ImageNet rows exist.
WNIDS = ("n01443537", "n01629819", "n01641577")
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n01641577": "bullfrog, Rana catesbeiana",
}


def make_tiny_imagenet(root: Path, *, per_class: int = 4, val_per_class: int = 2, seed: int = 0) -> Path:
    """Write ``root/tiny-imagenet-200`` with coloured 64x64 JPEGs; returns that folder."""
    rng = np.random.default_rng(seed)
    tree = root / "tiny-imagenet-200"
    (tree / "val" / "images").mkdir(parents=True, exist_ok=True)
    (tree / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")
    (tree / "words.txt").write_text("n00000001\tentity\n" + "".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    lines = []
    for c, wnid in enumerate(WNIDS):
        folder = tree / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros((64, 64, 3), np.uint8)
        base[..., c] = 200
        for i in range(per_class + val_per_class):
            noise = rng.integers(0, 40, size=(64, 64, 3), dtype=np.uint8)
            image = Image.fromarray(base + noise)
            if i < per_class:
                image.save(folder / f"{wnid}_{i}.JPEG")
            else:
                name = f"val_{c * val_per_class + i - per_class}.JPEG"
                image.save(tree / "val" / "images" / name)
                lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (tree / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tree
