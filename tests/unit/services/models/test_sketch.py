"""The drift sketch: one fixed projection in every process, filled by the classifier and the embedder only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from services.models.classification import Classifier, ClassifyParams, softmax
from services.models.detection import DetectParams, YoloxDetector
from services.models.embedding import Embedder, EmbedParams
from services.models.sketch import SKETCH_DIM, projection, sketch_of
from tests.unit.fakes import FakeRunner, make_spec

LOGITS = [0.5, 2.0, -1.0, 0.0]


def classifier() -> Classifier:
    return Classifier(make_spec(name="sketch", labels=["a", "b", "c", "d"]), FakeRunner(LOGITS))


def image() -> np.ndarray:
    return np.full((8, 8, 3), 100, dtype=np.uint8)


def test_the_projection_is_seeded_and_read_only() -> None:
    matrix = projection(200)
    assert matrix.shape == (200, SKETCH_DIM)
    assert not matrix.flags.writeable
    assert np.std(matrix) == pytest.approx(1 / np.sqrt(SKETCH_DIM), rel=0.05)
    assert not np.allclose(projection(199)[:10], matrix[:10])  # each input size its own matrix


def test_the_projection_is_the_same_in_another_process() -> None:
    code = "from services.models.sketch import sketch_of; print(sketch_of([0.25, 0.25, 0.5])[:3])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(sketch_of(np.array([0.25, 0.25, 0.5]))[:3])


def test_two_classifier_instances_sketch_alike() -> None:
    first = classifier().infer([image()], [ClassifyParams()])[0]
    second = classifier().infer([image()], [ClassifyParams()])[0]
    assert first.sketch is not None and len(first.sketch) == SKETCH_DIM
    assert first.sketch == second.sketch
    expected = softmax(np.asarray(LOGITS, dtype=np.float64)) @ projection(4)
    assert first.sketch == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_embedder_sketches_its_normalised_embedding() -> None:
    row = [3.0, 4.0, 0.0]
    model = Embedder(make_spec(name="e", task="embedding"), FakeRunner(row))
    found = model.infer([image()], [EmbedParams()])[0]
    assert found.result["embedding"] == pytest.approx([0.6, 0.8, 0.0])
    assert found.sketch == pytest.approx((np.array([0.6, 0.8, 0.0]) @ projection(3)).tolist(), abs=1e-5)


def test_the_detector_has_no_sketch() -> None:
    spec = make_spec(name="d", task="detection", arch="yolox", labels=["x"])
    spec = spec.model_copy(update={"input": spec.input.model_copy(update={"height": 32, "width": 32})})
    model = YoloxDetector(spec, FakeRunner(fn=lambda batch: np.zeros((len(batch), 21, 6), dtype=np.float32)))
    assert model.infer([image()], [DetectParams()])[0].sketch is None


def test_the_sketch_stays_out_of_the_public_result() -> None:
    found = classifier().infer([image()], [ClassifyParams()])[0]
    assert "sketch" not in found.result
