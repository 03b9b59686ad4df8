"""Augmentation for 64x64 Tiny-ImageNet sources upscaled to the network's 224x224.

Geometry and colour are changed at the source resolution (cheap, and a crop of a 64 px
image is still a 64 px image); the upscale to the network size comes last but for the
dropout, so holes have sharp edges in network pixels as an occluder would.

:class:`Upscale` is this project's own transform. With one method it is exactly the
serving resize (``services.models.preprocessing.resize``: Pillow's bicubic), so training
sees what serving sends. With several it picks one per image, so the model does not
learn one upscaler's ringing as a feature (callers may send images already upscaled).

``python -m training.data.augment --grid docs/images/augmentation_grid.png`` saves a grid
of real train images and their augmentations for a person to look at.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
from PIL import Image

from services.models.preprocessing import resize

INTERPOLATIONS = ("pil_bicubic", "pil_bilinear", "cv2_linear")


class Upscale(A.ImageOnlyTransform):
    """Resize to ``(height, width)`` with the serving code, choosing among ``methods`` at random."""

    def __init__(
        self,
        height: int,
        width: int,
        methods: Sequence[str] = ("pil_bicubic",),
        weights: Sequence[float] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        unknown = set(methods) - set(INTERPOLATIONS)
        if not methods or unknown:
            raise ValueError(f"methods must be a non-empty subset of {INTERPOLATIONS}, got {list(methods)}")
        if weights is not None and len(weights) != len(methods):
            raise ValueError("weights must have one entry per method")
        if weights is not None and (min(weights) < 0 or not sum(weights) > 0):
            raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
        self.height, self.width = height, width
        self.methods = tuple(methods)
        self.weights = tuple(weights) if weights is not None else None

    def get_params(self) -> dict[str, Any]:
        if len(self.methods) == 1:
            return {"method": self.methods[0]}
        return {"method": self.py_random.choices(self.methods, weights=self.weights)[0]}

    def apply(self, img: np.ndarray, method: str = "pil_bicubic", **params: Any) -> np.ndarray:
        return resize(np.ascontiguousarray(img), self.width, self.height, method)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "methods", "weights")


def train_transform(size: int = 224, seed: int | None = None, strength: float = 1.0) -> A.Compose:
    """The training pipeline: crop, flip, colour, then upscale and occlude.

    Args:
        size: Network input size.
        seed: Seed for a reproducible stream of augmentations.
        strength: Scales the crop range, colour jitter and dropout (0 = only the horizontal
            flip, still at p=0.5, and the upscale with its random method).
    """
    s = max(0.0, min(1.0, strength))
    return A.Compose(
        [
            A.RandomResizedCrop(size=(64, 64), scale=(1.0 - 0.45 * s, 1.0), ratio=(0.8, 1.25), p=1.0 if s else 0.0),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.3 * s, contrast=0.3 * s, saturation=0.3 * s, hue=0.03 * s, p=0.8 * s),
            Upscale(size, size, methods=INTERPOLATIONS, weights=(0.6, 0.2, 0.2)),
            A.CoarseDropout(
                num_holes_range=(1, 2), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25), fill=127, p=0.3 * s
            ),
        ],
        seed=seed,
    )


def eval_transform(size: int = 224) -> A.Compose:
    """What serving does to a square 64x64 image: a bicubic upscale and nothing else."""
    return A.Compose([Upscale(size, size)])


def load_rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def save_grid(paths: Sequence[Path], out: Path, *, columns: int = 6, size: int = 224, seed: int = 0) -> Path:
    """One row per image: the eval view, then ``columns - 1`` training augmentations.

    Returns:
        ``out``, a PNG.
    """
    augment, plain = train_transform(size, seed=seed), eval_transform(size)
    thumb = size // 2
    grid = Image.new("RGB", (columns * thumb, len(paths) * thumb), "white")
    for row, path in enumerate(paths):
        image = load_rgb(path)
        views = [plain(image=image)["image"]] + [augment(image=image)["image"] for _ in range(columns - 1)]
        for col, view in enumerate(views):
            tile = Image.fromarray(view).resize((thumb, thumb), Image.Resampling.BILINEAR)
            grid.paste(tile, (col * thumb, row * thumb))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from training.data.tiny_imagenet import TinyImageNet, locate
    from training.settings import TrainingSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, required=True, help="output PNG")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    root = locate(settings.data_dir / "datasets", settings.datasets_mirror_dir)
    samples = TinyImageNet(root).train()
    chosen = random.Random(args.seed).sample(samples, args.rows)
    save_grid([s.path for s in chosen], args.grid, columns=args.columns, seed=args.seed)
    print(args.grid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
