"""PyTorch datasets over samples (image files) and over stored trunk features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from training import lite0
from training.data.augment import load_rgb
from training.data.tiny_imagenet import Sample

# Lite0's normalisation, (x - 127) / 128 (the same value on every channel), as the export writes it.
MEAN = np.float32(lite0.MEAN[0])
STD = np.float32(lite0.STD[0])


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> 3 x H x W float32, normalised as Lite0 expects."""
    array = (image.astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes, transforms (an albumentations pipeline) and normalises each image."""

    def __init__(self, samples: Sequence[Sample], transform: Callable[..., dict[str, np.ndarray]]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        image = self.transform(image=load_rgb(sample.path))["image"]
        return to_tensor(image), sample.label


class FeatureDataset(Dataset[tuple[torch.Tensor, int]]):
    """Stored trunk outputs, ``views x N x C x H x W``; each read takes one view.

    With ``random_view`` a read picks a view at random (train: each epoch sees every image
    once, in one of its augmented views); otherwise view 0 (the eval view).
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, *, random_view: bool, seed: int = 0) -> None:
        if features.ndim != 5 or features.shape[1] != len(labels):
            raise ValueError(f"features {features.shape} do not match {len(labels)} labels")
        self.features, self.labels = features, labels
        self.random_view = random_view
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.features.shape[1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        view = int(self.rng.integers(self.features.shape[0])) if self.random_view else 0
        stored = np.asarray(self.features[view, index], dtype=np.float32)
        return torch.from_numpy(stored), int(self.labels[index])
