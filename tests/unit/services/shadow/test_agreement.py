"""Agreement maths on hand-made answers: top-1 labels, greedy box matching at IoU 0.5, cosine."""

from __future__ import annotations

from typing import Any

import pytest

from services.shadow.agreement import agreement, box_matches, cosine, iou, measure_of, top1_agreement


def box(x1: float, y1: float, x2: float, y2: float, class_id: int = 0, score: float = 0.9) -> dict[str, Any]:
    corners = {"x1": x1, "y1": y1, "x2": x2, "y2": y2}
    return {"box": corners, "class_id": class_id, "label": str(class_id), "score": score}


def test_iou_of_hand_made_boxes() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # two empty boxes do not overlap


def test_top1_agreement_compares_the_first_label_only() -> None:
    cat, dog = {"label": "cat"}, {"label": "dog"}
    assert top1_agreement([cat, dog], [cat]) == 1.0
    assert top1_agreement([cat, dog], [dog, cat]) == 0.0
    assert top1_agreement([], []) == 1.0


def test_boxes_match_within_their_class_at_iou_half() -> None:
    production = [box(0, 0, 10, 10), box(20, 20, 30, 30, class_id=1)]
    shadow = [box(1, 1, 11, 11), box(20, 20, 30, 30, class_id=2)]  # second box: right place, wrong class
    found = box_matches(production, shadow)
    assert (found.matched, found.production, found.shadow) == (1, 2, 2)
    assert found.rate == 0.5 and found.recall == 0.5


def test_a_box_below_iou_half_does_not_match() -> None:
    # IoU of (0,0,10,10) and (5,0,15,10) is 1/3.
    assert box_matches([box(0, 0, 10, 10)], [box(5, 0, 15, 10)]).matched == 0


def test_matching_is_one_to_one_and_greedy_by_production_score() -> None:
    # Two production boxes compete for one shadow box: the higher-scored one takes it.
    production = [box(0, 0, 10, 10, score=0.3), box(1, 0, 11, 10, score=0.8)]
    shadow = [box(1, 0, 11, 10)]
    found = box_matches(production, shadow)
    assert found.matched == 1 and found.rate == 0.5


def test_each_production_box_takes_the_best_free_shadow_box() -> None:
    production = [box(0, 0, 10, 10, score=0.9), box(2, 0, 12, 10, score=0.5)]
    shadow = [box(2, 0, 12, 10), box(0, 0, 10, 10)]  # the best for the first is the second
    assert box_matches(production, shadow).matched == 2


def test_extra_shadow_boxes_lower_the_rate_but_not_the_recall() -> None:
    found = box_matches([box(0, 0, 10, 10)], [box(0, 0, 10, 10), box(50, 50, 60, 60), box(70, 70, 80, 80)])
    assert found.recall == 1.0 and found.rate == pytest.approx(1 / 3)


def test_no_boxes_on_either_side_is_agreement() -> None:
    assert box_matches([], []).rate == 1.0
    assert box_matches([], [box(0, 0, 1, 1)]).rate == 0.0
    assert box_matches([box(0, 0, 1, 1)], []).rate == 0.0


def test_cosine_of_embeddings() -> None:
    assert cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 1.0]) == 0.0
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == 0.0  # clipped at 0
    assert cosine([1.0, 0.0], [1.0, 0.0, 0.0]) is None  # another embedding space
    assert cosine([0.0, 0.0], [1.0, 0.0]) is None


def test_agreement_follows_the_shape_of_the_answer() -> None:
    assert agreement({"predictions": [{"label": "a"}]}, {"predictions": [{"label": "a"}]}) == 1.0
    assert agreement({"detections": [box(0, 0, 10, 10)]}, {"detections": []}) == 0.0
    assert agreement({"embedding": [0.6, 0.8]}, {"embedding": [0.6, 0.8]}) == pytest.approx(1.0)
    assert agreement({"predictions": []}, {"detections": []}) is None
    results: list[dict[str, Any]] = [{"predictions": []}, {"detections": []}, {"embedding": []}, {}]
    assert [measure_of(r) for r in results] == [
        "top1",
        "box_match_iou50",
        "cosine",
        None,
    ]
