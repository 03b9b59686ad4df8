"""How far a shadow version's answer agrees with production's, for one image: a number in [0, 1].

The measure follows the answer's shape, as the inference log's summary does (services/db/records.py):

- classification (``predictions``): 1.0 when the top-1 labels are equal, else 0.0;
- detection (``detections``): the box match rate at IoU 0.5, boxes matched greedily within a class;
- embedding (``embedding``): the cosine of the two vectors, clipped at 0; None when their sizes differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _corners(detection: dict[str, Any]) -> tuple[float, float, float, float]:
    box = detection["box"]
    return float(box["x1"]), float(box["y1"]), float(box["x2"]), float(box["y2"])


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
    free = list(range(len(shadow)))
    matched = 0
    for detection in sorted(production, key=lambda d: -float(d.get("score", 0.0))):
        box = _corners(detection)
        best, best_iou = None, 0.0
        for j in free:
            if shadow[j].get("class_id") != detection.get("class_id"):
                continue
            overlap = iou(box, _corners(shadow[j]))
            if overlap >= threshold and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            free.remove(best)
            matched += 1
    return BoxMatch(matched=matched, production=len(production), shadow=len(shadow))


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cosine similarity clipped to [0, 1]; None when the vectors differ in size (other embedding spaces)."""
    if len(a) != len(b) or not a:
        return None
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return min(max(dot / norms, 0.0), 1.0) if norms > 0 else None
