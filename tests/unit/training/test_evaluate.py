"""Evaluation metrics on inputs with known answers, through the real serving model classes.

The runners are fakes (what a network would output for an image); the models, preprocessing,
postprocessing, metrics and pycocotools are the real ones. The real files run in
tests/integration/training/test_evaluate.py (mirror data needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.index.vectors import AdaptiveIndex
from services.models.classification import Classifier
from services.models.detection import YoloxDetector, make_grid
from services.models.embedding import Embedder
from services.models.spec import InputSpec, ModelSpec
from training import evaluate
from training.data.coco import yolo_ground_truth

COLOURS = {0: (250, 10, 10), 1: (10, 250, 10), 2: (10, 10, 250)}


def _spec(task: str, arch: str, output: str, size: int = 16, **extra: object) -> ModelSpec:
    return ModelSpec(
        name=task,
        version="t",
        task=task,  # type: ignore[arg-type]
        arch=arch,
        input=InputSpec(height=size, width=size),
        output_name=output,
        files={"fp32": "m.onnx"},
        **extra,  # type: ignore[arg-type]
    )


def _write(path: Path, colour: tuple[int, int, int], size: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)
    return path


def _dominant_channel_logits(batch: np.ndarray) -> np.ndarray:
    """A 'network' over 6 classes: classes 0-2 score their colour channel's brightness, 3-5 fixed lower scores."""
    means = batch.mean(axis=(2, 3))  # N x 3
    logits = np.tile(np.asarray([0, 0, 0, -1, -2, -3], np.float32), (len(batch), 1))
    logits[:, :3] = means / 255.0 * 10
    return logits


# --- classifier ----------------------------------------------------------------------------------


def test_classifier_accuracy_counts_top1_and_top5_hits(tmp_path: Path) -> None:
    model = Classifier(_spec("classification", "efficientnet_lite0", "logits"), _dominant_channel_logits)
    samples = [
        (_write(tmp_path / "r.png", COLOURS[0]), 0),  # top-1 hit
        (_write(tmp_path / "g.png", COLOURS[1]), 1),  # top-1 hit
        (_write(tmp_path / "b.png", COLOURS[2]), 0),  # second choice: top-5 hit only
        (_write(tmp_path / "b2.png", COLOURS[2]), 5),  # sixth choice: a miss
    ]
    result = evaluate.classifier_accuracy(model, samples, batch_size=3)
    assert result == {"top1": 0.5, "top5": 0.75, "images": 4}


def test_classifier_accuracy_needs_samples() -> None:
    model = Classifier(_spec("classification", "efficientnet_lite0", "logits"), _dominant_channel_logits)
    with pytest.raises(ValueError, match="no samples"):
        evaluate.classifier_accuracy(model, [])


# --- retrieval -----------------------------------------------------------------------------------


def test_precision_at_k_is_one_for_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 10
    embeddings = np.concatenate([c + rng.normal(0, 0.1, (5, 8)) for c in centres])
    labels = np.repeat(np.arange(4), 5)
    assert evaluate.precision_at_k(embeddings, labels, k=4) == 1.0


def test_precision_at_k_counts_only_same_label_neighbours() -> None:
    # Points on a line: 0, 1, 2, 10, 11, 12 (labels a a b b b a); nearest two of each, never itself.
    embeddings = np.asarray([[1.0, x] for x in (0.0, 0.01, 0.02, 1.0, 1.01, 1.02)])
    labels = np.asarray([0, 0, 1, 1, 1, 0])
    # neighbours: 0 -> {1,2}: 1/2; 1 -> {0,2}: 1/2; 2 -> {1,0}: 0; 3 -> {4,5}: 1/2; 4 -> {3,5}: 1/2; 5 -> {4,3}: 0
    assert evaluate.precision_at_k(embeddings, labels, k=2) == pytest.approx(2 / 6)
    assert evaluate.precision_at_k(embeddings, labels, k=2, chunk=4) == pytest.approx(2 / 6)


def test_expanded_precision_ranks_each_row_as_the_gallery_index_would_without_it() -> None:
    """Leave-one-out expansion of row i == AdaptiveIndex over the other rows searching row i with ``expand``."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 8))
    labels = rng.integers(0, 4, 40)
    embeddings = centres[labels] + 0.9 * rng.normal(size=(40, 8))
    vectors = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    hits = evaluate.neighbour_hits(embeddings, labels, k=5, expand=3, chunk=16)
    for row in range(40):
        others = np.delete(np.arange(40), row)
        index = AdaptiveIndex(8)
        index.add(vectors[others], others.astype(np.int64))
        _, found = index.search(vectors[row : row + 1], 5, expand=3)
        assert hits[row] == pytest.approx((labels[found[0]] == labels[row]).mean())
    assert not np.allclose(hits, evaluate.neighbour_hits(embeddings, labels, k=5)), "expansion changed something"


def test_precision_at_k_normalises_rows_so_scale_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(30, 6))
    labels = rng.integers(0, 3, 30)
    scaled = embeddings * rng.uniform(0.1, 10, (30, 1))
    assert evaluate.precision_at_k(embeddings, labels, k=5) == evaluate.precision_at_k(scaled, labels, k=5, chunk=7)


def test_precision_at_k_needs_more_rows_than_k() -> None:
    with pytest.raises(ValueError, match="more than k"):
        evaluate.precision_at_k(np.ones((3, 2)), np.zeros(3), k=3)


def test_embedder_precision_runs_images_through_the_serving_embedder(tmp_path: Path) -> None:
    model = Embedder(_spec("embedding", "efficientnet_lite0", "embeddings"), lambda b: b.mean(axis=(2, 3)))
    samples = [(_write(tmp_path / f"{c}-{i}.png", colour), c) for c, colour in COLOURS.items() for i in range(3)]
    result = evaluate.embedder_precision(model, samples, k=2, batch_size=4)
    assert result == {"precision_at_2": 1.0, "images": 9, "k": 2, "expand": 0}


# --- detection -----------------------------------------------------------------------------------


def test_ground_truth_as_detections_scores_a_perfect_map() -> None:
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 0, "bbox": [0, 0, 99, 99], "area": 9801, "iscrowd": 0},
        ],
        "categories": [{"id": i, "name": str(i)} for i in range(5)],
    }
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]  # fmt: skip
    assert evaluate.coco_map(gt, perfect) == {"map50_95": pytest.approx(1.0), "map50": pytest.approx(1.0)}
    shifted = [{**d, "bbox": [d["bbox"][0] + 8, *d["bbox"][1:]]} for d in perfect]
    worse = evaluate.coco_map(gt, shifted)
    assert worse["map50_95"] < 0.9 and worse["map50"] == pytest.approx(1.0)
    assert evaluate.coco_map(gt, []) == {"map50_95": 0.0, "map50": 0.0}


def test_served_results_become_coco_boxes() -> None:
    result = {"detections": [{"box": {"x1": 1.0, "y1": 2.0, "x2": 11.0, "y2": 7.0}, "class_id": 4, "score": 0.5}]}
    assert evaluate.to_coco_results(7, result) == [
        {"image_id": 7, "category_id": 4, "score": 0.5, "bbox": [1.0, 2.0, 10.0, 5.0]}
    ]


def _raw_rows_for(boxes: list[tuple[int, list[float]]], size: int) -> np.ndarray:
    """YOLOX raw rows that decode to ``(class, [x, y, w, h])`` boxes in network pixels, one per stride-32 cell."""
    grid, strides = make_grid(size, size, [8, 16, 32])
    rows = np.zeros((len(grid), 85), np.float32)  # obj 0: every other row scores 0 and is dropped
    for class_id, (x, y, w, h) in boxes:
        cx, cy = x + w / 2, y + h / 2
        index = int(np.flatnonzero((strides[:, 0] == 32) & (grid[:, 0] == cx // 32) & (grid[:, 1] == cy // 32))[0])
        rows[index, :4] = [cx / 32 - grid[index, 0], cy / 32 - grid[index, 1], math.log(w / 32), math.log(h / 32)]
        rows[index, 4] = 1.0
        rows[index, 5 + class_id] = 0.9
    return rows


def test_detector_map_of_a_model_that_finds_every_box_is_one(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    # Two 416x416 images with the same labels (scale 1, no letterbox offset): one fake output serves both.
    for name in ("a", "b"):
        _write(root / "images" / "val2017" / f"{name}.jpg", (100, 100, 100), size=416)
        (root / "labels" / "val2017").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "val2017" / f"{name}.txt").write_text("3 0.25 0.25 0.25 0.125\n7 0.625 0.75 0.5 0.25\n")
    gt, _ = yolo_ground_truth(root, "val2017")
    rows = _raw_rows_for([(a["category_id"], a["bbox"]) for a in gt["annotations"][:2]], 416)
    spec = _spec("detection", "yolox", "output", size=416, extra={"strides": [8, 16, 32]})
    model = YoloxDetector(spec, lambda batch: np.repeat(rows[None], len(batch), axis=0))
    result = evaluate.detector_map(model, root, batch_size=1)
    assert result["map50_95"] == pytest.approx(1.0)
    assert result["images"] == 2 and result["boxes"] == 4 and result["detections"] == 4
    assert result["params"] == {"confidence": 0.001, "iou": 0.65, "max_detections": 100, "classes": None}


def test_the_command_line_flip_embeds_the_mirror_too_and_needs_class_probabilities(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, object] = {}

    def fake_evaluate(kind: str, onnx_path: Path, **kwargs: object) -> dict[str, object]:
        seen.update(kwargs)
        return {"kind": kind}

    monkeypatch.setattr(evaluate, "evaluate", fake_evaluate)
    assert evaluate.main(["embedder", "--onnx", "m.onnx", "--class-probabilities", "1.0", "--flip"]) == 0
    head = seen["embedding"]
    assert head is not None and head.transform == "softmax" and head.flip  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        evaluate.parse_args(["embedder", "--onnx", "m.onnx", "--flip"])
    assert "--class-probabilities" in capsys.readouterr().err
