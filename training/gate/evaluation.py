"""The held-out data of each task and one model file's evaluation on it, through the serving pipeline.

The task metrics are :mod:`training.evaluate`'s (top-k accuracy, COCO mAP, precision@10); the gate adds the
confidences and per-class scores behind calibration and the worst classes. Images are decoded once and shared by
every version and precision, so all of them see the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.models.classification import ClassifyParams
from services.models.contract import Model
from services.models.embedding import EmbedParams
from services.models.spec import Task
from services.sequences import batched
from training.evaluate import MAP_PARAMS, coco_evaluator, neighbour_hits, to_coco_results, top_k_accuracy
from training.gate.measures import (
    class_ap,
    detection_calibration,
    expected_calibration_error,
    worst_classes,
)
from training.gate.results import PrecisionResult
from training.serving import read_rgb
from training.settings import TrainingSettings

BATCH = 16
NOT_A_CLASS = -1  # a prediction outside the held-out label set (an ImageNet-1k class that is not in the 200)


@dataclass
class HeldOut:
    """The images every version is measured on, their labels and what names the labels.

    Attributes:
        task: The model family's task.
        paths: The image files, in evaluation order.
        labels: Class index per image (classification, embedding); unused for detection.
        names: A readable name per class index (Tiny-ImageNet classes, COCO categories).
        label_ids: Tiny-ImageNet wnid per class index, to map a model's own label ids onto them.
        ground_truth: The COCO ground-truth dict of ``paths`` (detection).
    """

    task: Task
    paths: list[Path]
    labels: np.ndarray
    names: list[str]
    label_ids: list[str] = field(default_factory=list)
    ground_truth: dict[str, Any] = field(default_factory=dict)
    _pixels: list[np.ndarray] | None = None

    def pixels(self) -> list[np.ndarray]:
        """The decoded images (decoded once, as an upload would be)."""
        if self._pixels is None:
            self._pixels = [read_rgb(path) for path in self.paths]
        return self._pixels


def subset(count: int, limit: int | None, seed: int) -> list[int]:
    """A fixed, seeded draw of ``limit`` indices out of ``count``, sorted; every index when ``limit`` is None."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, size=limit, replace=False).tolist())


def held_out(task: Task, settings: TrainingSettings, *, limit: int | None, seed: int) -> HeldOut:
    """The held-out split of ``task``: Tiny-ImageNet-200 val, or the 128 COCO val2017 images."""
    if task == "detection":
        from services.models.specs.yolox import detector_labels
        from training.data.coco import locate_coco128, yolo_ground_truth

        truth, paths = yolo_ground_truth(locate_coco128(settings.data_dir, settings.datasets_mirror_dir), "val2017")
        keep = subset(len(paths), limit, seed)
        return HeldOut(
            task=task,
            paths=[paths[i] for i in keep],
            labels=np.zeros(len(keep), dtype=int),
            names=detector_labels(),
            ground_truth=keep_images(truth, keep),
        )
    from training.data.tiny_imagenet import TinyImageNet, locate

    dataset = TinyImageNet(locate(settings.data_dir / "datasets", settings.datasets_mirror_dir))
    val = dataset.val()
    keep = subset(len(val), limit, seed)
    return HeldOut(
        task=task,
        paths=[val[i].path for i in keep],
        labels=np.asarray([val[i].label for i in keep]),
        names=dataset.class_names(),
        label_ids=dataset.wnids,
    )


def keep_images(truth: dict[str, Any], keep: Sequence[int]) -> dict[str, Any]:
    """The ground truth of the kept images (0-based positions), renumbered 1.. in the order kept."""
    new_id = {i + 1: n for n, i in enumerate(keep, start=1)}
    images = [{**image, "id": new_id[image["id"]]} for image in truth["images"] if image["id"] in new_id]
    annotations = [{**a, "image_id": new_id[a["image_id"]]} for a in truth["annotations"] if a["image_id"] in new_id]
    return {**truth, "images": images, "annotations": annotations}


def evaluate_file(model: Model[Any], data: HeldOut) -> PrecisionResult:
    """The task metrics, calibration and worst classes of one loaded model file on ``data``."""
    if data.task == "detection":
        return _detector(model, data)
    if data.task == "embedding":
        return _embedder(model, data)
    return _classifier(model, data)


def _classifier(model: Model[Any], data: HeldOut) -> PrecisionResult:
    # Predictions are matched by WordNet id, so a model with another label set (the ImageNet-1k head) is scored
    # on the held-out classes as served: a prediction outside them is simply wrong.
    index = {wnid: i for i, wnid in enumerate(data.label_ids)}
    own = model.spec.extra.get("label_ids") or []
    mapped = [index.get(wnid, NOT_A_CLASS) for wnid in own]
    params = ClassifyParams(top_k=5)
    top5: list[list[int]] = []
    confidence: list[float] = []
    for chunk in batched(data.pixels(), BATCH):
        for prediction in model.infer(list(chunk), [params] * len(chunk)):
            ranked = prediction.result["predictions"]
            top5.append([mapped[p["class_id"]] if p["class_id"] < len(mapped) else NOT_A_CLASS for p in ranked])
            confidence.append(ranked[0]["score"])
    top = np.asarray(top5)
    hit = top[:, 0] == data.labels
    return PrecisionResult(
        metrics=top_k_accuracy(top, data.labels),
        ece=expected_calibration_error(np.asarray(confidence), hit),
        worst=worst_classes(hit.astype(float), data.labels, data.names),
        outputs={"top1": top[:, 0], "confidence": np.asarray(confidence)},
    )


def _embedder(model: Model[Any], data: HeldOut) -> PrecisionResult:
    params = EmbedParams()
    rows: list[list[float]] = []
    for chunk in batched(data.pixels(), BATCH):
        rows.extend(p.result["embedding"] for p in model.infer(list(chunk), [params] * len(chunk)))
    embeddings = np.asarray(rows, dtype=np.float32)
    shares = neighbour_hits(embeddings, data.labels)
    return PrecisionResult(
        metrics={"precision_at_10": float(shares.mean())},
        ece=None,
        worst=worst_classes(shares, data.labels, data.names),
        outputs={"embeddings": embeddings},
    )


def _detector(model: Model[Any], data: HeldOut) -> PrecisionResult:
    detections: list[dict[str, Any]] = []
    pixels = data.pixels()
    ids = list(range(1, len(pixels) + 1))
    for chunk in batched(ids, BATCH):
        predictions = model.infer([pixels[i - 1] for i in chunk], [MAP_PARAMS] * len(chunk))
        for image_id, prediction in zip(chunk, predictions, strict=True):
            detections.extend(to_coco_results(image_id, prediction.result))
    evaluator = coco_evaluator(data.ground_truth, detections)
    if evaluator is None:
        return PrecisionResult(metrics={"map50_95": 0.0, "map50": 0.0}, ece=None, worst=[])
    scores, hits = detection_calibration(evaluator)
    return PrecisionResult(
        metrics={"map50_95": float(evaluator.stats[0]), "map50": float(evaluator.stats[1])},
        ece=expected_calibration_error(scores, hits) if scores.size else None,
        worst=class_ap(evaluator, data.names),
        outputs={"scores": np.asarray([d["score"] for d in detections])},
    )
