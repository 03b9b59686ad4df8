"""How far a shadow version's answer agrees with production's, for one image: a number in [0, 1].

The measure follows the answer's shape, as the inference log's summary does (services/db/records.py):

- classification (``predictions``): 1.0 when the top-1 labels are equal, else 0.0;
- detection (``detections``): the box match rate at IoU 0.5, boxes matched greedily within a class;
- embedding (``embedding``): the cosine of the two vectors, clipped at 0; None when their sizes differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MATCH_IOU = 0.5
MEASURES = {"predictions": "top1", "detections": "box_match_iou50", "embedding": "cosine"}


def measure_of(result: dict[str, Any]) -> str | None:
    """The name of the measure that compares answers shaped like ``result`` (None: none does)."""
    return next((name for key, name in MEASURES.items() if key in result), None)


def agreement(production: dict[str, Any], shadow: dict[str, Any]) -> float | None:
    """Agreement of ``shadow``'s result with ``production``'s, or None when they cannot be compared."""
    if "predictions" in production and "predictions" in shadow:
        return top1_agreement(production["predictions"], shadow["predictions"])
    if "detections" in production and "detections" in shadow:
        return box_matches(production["detections"], shadow["detections"]).rate
    if "embedding" in production and "embedding" in shadow:
        return cosine(production["embedding"], shadow["embedding"])
    return None


def top1_agreement(production: Sequence[dict[str, Any]], shadow: Sequence[dict[str, Any]]) -> float:
    """1.0 when both answers' first label is the same (two empty answers agree), else 0.0."""
    first = production[0].get("label") if production else None
    other = shadow[0].get("label") if shadow else None
    return 1.0 if first == other else 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when both are empty)."""
    return float(iou_matrix(np.asarray([a], dtype=np.float64), np.asarray([b], dtype=np.float64))[0, 0])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N x 4) with every box of ``b`` (M x 4): an N x M array."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _classes(detections: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.asarray([int(d.get("class_id", -1)) for d in detections], dtype=np.int64)


def _corners(detections: Sequence[dict[str, Any]]) -> np.ndarray:
    boxes = [[d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"]] for d in detections]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class BoxMatch:
    """Boxes of production and shadow that found a partner of their class at IoU >= 0.5."""

    matched: int
    production: int
    shadow: int

    @property
    def rate(self) -> float:
        """``matched / max(production, shadow)``: a shadow that misses boxes or adds boxes both lose; 1.0 if both
        are empty. Equal to the share of production boxes matched when the shadow finds no extra box."""
        most = max(self.production, self.shadow)
        return self.matched / most if most else 1.0

    @property
    def recall(self) -> float:
        """Share of production's boxes the shadow matched (1.0 when production found none)."""
        return self.matched / self.production if self.production else 1.0


def box_matches(
    production: Sequence[dict[str, Any]], shadow: Sequence[dict[str, Any]], threshold: float = MATCH_IOU
) -> BoxMatch:
    """Greedy one-to-one matching: production's boxes, best score first, each take the free shadow box of the
    same class with the highest IoU, if that IoU reaches ``threshold`` (the usual detection-evaluation rule)."""
    ranked = sorted(production, key=lambda d: -float(d.get("score", 0.0)))
    overlaps = iou_matrix(_corners(ranked), _corners(shadow))
    overlaps[_classes(ranked)[:, None] != _classes(shadow)[None, :]] = 0.0
    overlaps[overlaps < threshold] = 0.0
    matched = 0
    for row in overlaps:  # the boxes are few (max_detections); a pass per production box
        best = int(row.argmax()) if row.size else 0
        if row.size and row[best] > 0:
            overlaps[:, best] = 0.0  # taken
            matched += 1
    return BoxMatch(matched=matched, production=len(production), shadow=len(shadow))


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cosine similarity clipped to [0, 1]; None when the vectors differ in size (other embedding spaces)."""
    if len(a) != len(b) or not len(a):
        return None
    u, v = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(u) * np.linalg.norm(v))
    return min(max(float(u @ v) / norms, 0.0), 1.0) if norms > 0 else None
