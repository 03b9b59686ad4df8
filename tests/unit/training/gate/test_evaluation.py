"""One model file's evaluation through the real serving classes, over fake runners; the held-out subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.models.classification import Classifier
from services.models.embedding import Embedder
from services.models.spec import InputSpec, ModelSpec
from training.gate.evaluation import HeldOut, evaluate_file, keep_images, subset

SIZE = 8
STEP = 60.0  # class c's images are filled with c * STEP


def _spec(task: str, label_ids: list[str]) -> ModelSpec:
    return ModelSpec(
        name="m",
        version="v1",
        task=task,  # type: ignore[arg-type]
        arch="efficientnet_lite0",
        input=InputSpec(height=SIZE, width=SIZE, interpolation="pil_bilinear"),
        output_name="y",
        labels=label_ids if task == "classification" else [],
        files={"fp32": "m.onnx"},
        extra={"label_ids": label_ids},
    )


def _logits(batch: np.ndarray) -> np.ndarray:
    """Class c scores high when the image's mean value is near c * STEP (three classes)."""
    level = batch.reshape(len(batch), -1).mean(axis=1, keepdims=True)
    return -np.abs(level - STEP * np.arange(3)[None, :]) / 10.0


def _data(labels: list[int], shown: list[int], task: str = "classification") -> HeldOut:
    pixels = [np.full((SIZE, SIZE, 3), int(c * STEP), dtype=np.uint8) for c in shown]
    return HeldOut(
        task=task,  # type: ignore[arg-type]
        paths=[Path(f"{i}.png") for i in range(len(labels))],
        labels=np.asarray(labels),
        names=["zero", "one", "two"],
        label_ids=["n0", "n1", "n2"],
        _pixels=pixels,
    )


def test_classifier_metrics_ece_and_worst_classes() -> None:
    # Eight images; the last one shows class 2 but is labelled 1: one miss.
    labels = [0, 0, 1, 1, 1, 2, 2, 1]
    shown = [0, 0, 1, 1, 1, 2, 2, 2]
    result = evaluate_file(Classifier(_spec("classification", ["n0", "n1", "n2"]), _logits), _data(labels, shown))
    assert result.metrics == {"top1": pytest.approx(7 / 8), "top5": 1.0}
    assert result.worst[0].name == "one" and result.worst[0].score == pytest.approx(0.75)
    assert result.outputs["top1"].tolist() == shown
    confidence = result.outputs["confidence"]
    assert np.all((confidence > 0.5) & (confidence < 1.0))
    assert result.ece is not None and 0.0 < result.ece < 1.0


def test_classifier_predictions_outside_the_held_out_classes_count_as_wrong() -> None:
    # The model's class 1 is a WordNet id the held-out data does not have (an ImageNet-1k class).
    labels = shown = [0, 1, 2, 1]
    model = Classifier(_spec("classification", ["n0", "n99", "n2"]), _logits)
    result = evaluate_file(model, _data(labels, shown))
    assert result.metrics["top1"] == pytest.approx(0.5)
    assert result.outputs["top1"].tolist() == [0, -1, 2, -1]


def test_embedder_precision_at_10_per_class() -> None:
    labels = [c for c in range(3) for _ in range(4)]  # twelve images, four per class

    def vectors(batch: np.ndarray) -> np.ndarray:
        return np.exp(_logits(batch) * 10)  # peaked at the image's class

    result = evaluate_file(Embedder(_spec("embedding", []), vectors), _data(labels, labels, "embedding"))
    # Each query has 3 same-class images among its 10 nearest others.
    assert result.metrics == {"precision_at_10": pytest.approx(0.3)}
    assert result.ece is None and [c.score for c in result.worst] == pytest.approx([0.3, 0.3, 0.3])
    assert result.outputs["embeddings"].shape == (12, 3)


def test_subset_is_seeded_sorted_and_whole_without_limit() -> None:
    assert subset(5, None, 0) == [0, 1, 2, 3, 4] and subset(5, 9, 0) == [0, 1, 2, 3, 4]
    drawn = subset(100, 10, 0)
    assert drawn == sorted(drawn) and len(set(drawn)) == 10 and drawn == subset(100, 10, 0)
    assert drawn != subset(100, 10, 1)


def test_keep_images_renumbers_the_kept_ground_truth() -> None:
    truth = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in (1, 2, 3)],
        "annotations": [{"id": 1, "image_id": 1}, {"id": 2, "image_id": 3}, {"id": 3, "image_id": 3}],
        "categories": [],
    }
    kept = keep_images(truth, [2])  # the third image, 0-based
    assert kept["images"] == [{"id": 1, "file_name": "3.jpg"}]
    assert [a["image_id"] for a in kept["annotations"]] == [1, 1]
