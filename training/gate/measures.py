"""The gate's own measures: expected calibration error, per-class scores, and what COCOeval holds per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.gate.results import ClassScore

ECE_BINS = 15
WORST = 10
# Detection calibration counts the detections a client would see at a usable threshold, not the 0.001 floor of
# the mAP protocol (those are almost all wrong and almost all near 0, which would flatter every model alike).
DETECTION_ECE_MIN_SCORE = 0.05


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over ``bins`` equal-width confidence bins: sum over bins of (share of samples) x |accuracy - confidence|.

    A sample with confidence c falls in bin ``ceil(c * bins) - 1`` (bins are (lo, hi], the first one [0, hi]).

    Raises:
        ValueError: no samples, or the two arrays differ in length.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0 or confidence.shape != correct.shape:
        raise ValueError(f"need as many confidences as outcomes (got {confidence.shape} and {correct.shape})")
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def worst_classes(scores: np.ndarray, labels: np.ndarray, names: Sequence[str], n: int = WORST) -> list[ClassScore]:
    """The ``n`` classes with the lowest mean per-sample score (a 0/1 hit, a precision), lowest first.

    Args:
        scores: One score per sample.
        labels: Each sample's class index (into ``names``).
        names: A readable name per class index.
        n: How many to keep.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    per_class = [
        ClassScore(names[c], float(scores[labels == c].mean()), int((labels == c).sum())) for c in np.unique(labels)
    ]
    return sorted(per_class, key=lambda c: (c.score, c.name))[:n]


def class_ap(evaluator: Any, names: Sequence[str], n: int = WORST) -> list[ClassScore]:
    """The ``n`` classes with the lowest AP@0.5:0.95 among those with ground truth, from an accumulated COCOeval."""
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max detections]
    gt_counts: dict[int, int] = {}
    for annotation in evaluator.cocoGt.dataset["annotations"]:
        gt_counts[annotation["category_id"]] = gt_counts.get(annotation["category_id"], 0) + 1
    found = []
    for k, category in enumerate(evaluator.params.catIds):
        if category not in gt_counts:
            continue
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        ap = float(values.mean()) if values.size else 0.0
        found.append(ClassScore(names[category] if category < len(names) else str(category), ap, gt_counts[category]))
    return sorted(found, key=lambda c: (c.score, c.name))[:n]


def detection_calibration(evaluator: Any, min_score: float = DETECTION_ECE_MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """Each kept detection's score and whether it matched a ground-truth box at IoU 0.5 (COCOeval's matching).

    Detections matched to an ignored (crowd) box are left out; so are those under ``min_score``.
    """
    area_all = evaluator.params.areaRng[0]
    max_det = evaluator.params.maxDets[-1]
    scores: list[float] = []
    hits: list[bool] = []
    for image in evaluator.evalImgs:
        if image is None or image["aRng"] != area_all or image["maxDet"] != max_det:
            continue
        matched = np.asarray(image["dtMatches"])[0] > 0  # row 0: IoU threshold 0.5
        ignored = np.asarray(image["dtIgnore"])[0].astype(bool)
        for score, hit, skip in zip(image["dtScores"], matched, ignored, strict=True):
            if not skip and score >= min_score:
                scores.append(float(score))
                hits.append(bool(hit))
    return np.asarray(scores), np.asarray(hits)
