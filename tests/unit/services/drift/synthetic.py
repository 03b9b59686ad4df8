"""Synthetic request-feature rows with known distributions, for the drift tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.drift.features import IMAGE_FEATURES, SKETCH_DIM
from services.drift.reference import ReferenceProfile, build_reference

CLASSES = [f"c{i:02d}" for i in range(20)]


def rows(
    n: int,
    seed: int,
    *,
    brightness: float = 0.5,
    class_weights: np.ndarray | None = None,
    sketch_shift: float = 0.0,
    sketch: bool = True,
) -> list[dict[str, Any]]:
    """``n`` rows: normal image features, a class drawn from ``class_weights``, a Gaussian sketch."""
    rng = np.random.default_rng(seed)
    weights = np.full(len(CLASSES), 1 / len(CLASSES)) if class_weights is None else class_weights / class_weights.sum()
    labels = rng.choice(len(CLASSES), size=n, p=weights)
    means = {"width": 64.0, "height": 64.0, "brightness": brightness, "contrast": 0.2, "saturation": 0.3, "blur": 0.1}
    spread = {"width": 0.0, "height": 0.0, "brightness": 0.1, "contrast": 0.05, "saturation": 0.1, "blur": 0.03}
    found = []
    for i in range(n):
        image = {name: float(means[name] + spread[name] * rng.standard_normal()) for name in IMAGE_FEATURES}
        found.append(
            {
                "image": image,
                "label": CLASSES[int(labels[i])],
                "confidence": float(rng.beta(5, 2)),
                "sketch": (rng.standard_normal(SKETCH_DIM) + sketch_shift).tolist() if sketch else None,
            }
        )
    return found


def reference(n: int = 600, seed: int = 10_000, **kwargs: Any) -> ReferenceProfile:
    return build_reference("m", "v1", rows(n, seed, **kwargs), source="synthetic")
