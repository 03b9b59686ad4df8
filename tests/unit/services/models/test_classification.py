"""Softmax and top-k labels of the classifier."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from services.models.classification import Classifier, ClassifyParams, softmax
from services.models.preprocessing import Prepared
from tests.unit.fakes import FakeRunner, make_spec

PREPARED = Prepared(tensor=np.zeros((3, 8, 8), np.float32), scale=1.0, offset=(0.0, 0.0), original_size=(8, 8))


def classifier(labels: list[str], extra: dict[str, object] | None = None) -> Classifier:
    return Classifier(make_spec(labels=labels, extra=extra), FakeRunner())


def test_softmax_is_stable_for_huge_logits() -> None:
    probs = softmax(np.asarray([1000.0, 1001.0, 1002.0]))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, softmax(np.asarray([0.0, 1.0, 2.0])), rtol=1e-12)
    assert probs.sum() == pytest.approx(1.0)


def test_softmax_known_values_per_row() -> None:
    probs = softmax(np.asarray([[0.0, 0.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]])


def test_softmax_very_negative_logits_do_not_give_nan() -> None:
    probs = softmax(np.asarray([-1e30, 0.0]))
    assert probs.tolist() == [0.0, 1.0]


def test_classifier_top_k_ordered_by_score_with_labels() -> None:
    logits = np.asarray([0.1, 3.0, 2.0, -1.0], dtype=np.float32)
    result = classifier(["a", "b", "c", "d"]).postprocess(logits, PREPARED, ClassifyParams(top_k=3))
    predictions = result["predictions"]
    assert [p["class_id"] for p in predictions] == [1, 2, 0]
    assert [p["label"] for p in predictions] == ["b", "c", "a"]
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(softmax(logits.astype(np.float64))[1]))
    assert all("label_id" not in p for p in predictions)


def test_classifier_label_id_present_when_spec_has_label_ids() -> None:
    model = classifier(["cat", "dog"], extra={"label_ids": ["n02123045", "n02084071"]})
    result = model.postprocess(np.asarray([0.0, 5.0]), PREPARED, ClassifyParams(top_k=2))
    assert [(p["label"], p["label_id"]) for p in result["predictions"]] == [
        ("dog", "n02084071"),
        ("cat", "n02123045"),
    ]


def test_classifier_top_k_larger_than_classes_returns_all() -> None:
    result = classifier(["a", "b"]).postprocess(np.asarray([1.0, 2.0]), PREPARED, ClassifyParams(top_k=10))
    assert len(result["predictions"]) == 2
    assert sum(p["score"] for p in result["predictions"]) == pytest.approx(1.0)


def test_classifier_missing_labels_fall_back_to_class_id() -> None:
    result = classifier(["a"]).postprocess(np.asarray([0.0, 9.0]), PREPARED, ClassifyParams(top_k=1))
    assert result["predictions"] == [{"class_id": 1, "label": "1", "score": pytest.approx(1.0, abs=1e-3)}]


@pytest.mark.parametrize("top_k", [0, 1001])
def test_classify_params_reject_out_of_range_top_k(top_k: int) -> None:
    with pytest.raises(ValidationError):
        ClassifyParams(top_k=top_k)
