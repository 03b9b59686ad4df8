"""Expected calibration error against a value computed by hand, the worst classes, COCOeval per class."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import coco_evaluator
from training.gate.measures import class_ap, detection_calibration, expected_calibration_error, worst_classes


def test_ece_matches_the_hand_computed_value() -> None:
    # 15 bins of width 1/15. 0.95 -> bin 14 (two samples, one right): |0.5 - 0.95| * 2/5 = 0.18;
    # 0.65 -> bin 9 (two, both right): |1 - 0.65| * 2/5 = 0.14; 0.3 -> bin 4 (one, wrong): |0 - 0.3| * 1/5 = 0.06.
    confidence = np.array([0.95, 0.95, 0.65, 0.65, 0.3])
    correct = np.array([True, False, True, True, False])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.38)


def test_ece_of_a_calibrated_model_is_zero_and_bins_matter() -> None:
    confidence = np.array([0.75, 0.75, 0.75, 0.75, 0.25, 0.25, 0.25, 0.25])
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    # One bin: |mean accuracy 0.5 - mean confidence 0.5| = 0.
    assert expected_calibration_error(confidence, correct, bins=1) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 0])) == pytest.approx(0.5)


def test_ece_refuses_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="as many"):
        expected_calibration_error(np.array([0.5]), np.array([1, 0]))
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([]), np.array([]))


def test_worst_classes_are_the_lowest_mean_scores_first() -> None:
    scores = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    worst = worst_classes(scores, labels, ["a", "b", "c", "d"], n=3)
    assert [(c.name, c.score, c.count) for c in worst] == [("c", 0.0, 2), ("a", 0.5, 2), ("d", 0.5, 1)]


def _ground_truth() -> dict:
    return {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": i, "name": str(i)} for i in range(3)],
    }


def test_class_ap_and_detection_calibration_from_cocoeval() -> None:
    detections = [
        {"image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "score": 0.9},  # exact: a hit
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.6},  # elsewhere: a miss
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.3},  # a class with no ground truth
        {"image_id": 1, "category_id": 0, "bbox": [70, 0, 10, 10], "score": 0.01},  # under the ECE floor
    ]
    evaluator = coco_evaluator(_ground_truth(), detections)
    worst = class_ap(evaluator, ["person", "bicycle", "car"])
    assert [(c.name, c.count) for c in worst] == [("bicycle", 1), ("person", 1)]
    assert worst[0].score == pytest.approx(0.0) and worst[1].score == pytest.approx(1.0)
    scores, hits = detection_calibration(evaluator)
    assert sorted(zip(scores.tolist(), hits.tolist(), strict=True)) == [(0.3, False), (0.6, False), (0.9, True)]
    assert coco_evaluator(_ground_truth(), []) is None
