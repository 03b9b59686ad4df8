"""The model contract: preprocess -> one batched predict -> postprocess, each stage timed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.models.classification import Classifier, ClassifyParams
from services.models.preprocessing import prepare
from services.models.spec import ModelSpec
from tests.unit.fakes import FakeRunner, make_spec, sample


def spec(name: str) -> ModelSpec:
    return make_spec(name=name, version="v7", labels=["a", "b", "c"])


def images(n: int) -> list[np.ndarray]:
    return [np.full((8 + i, 10, 3), 10 * i, dtype=np.uint8) for i in range(n)]


def test_infer_stacks_batch_and_calls_runner_once() -> None:
    runner = FakeRunner([0.0, 1.0, 2.0])
    model = Classifier(spec("contract-batch"), runner)
    predictions = model.infer(images(3), [ClassifyParams(top_k=1)] * 3)
    assert len(runner.batches) == 1
    batch = runner.batches[0]
    assert batch.shape == (3, 3, 8, 8)
    assert batch.dtype == np.float32
    for i, image in enumerate(images(3)):
        np.testing.assert_array_equal(batch[i], prepare(image, model.spec.input).tensor)
    assert [p.result["predictions"][0]["label"] for p in predictions] == ["c"] * 3


def test_images_of_different_input_shapes_run_one_call_per_shape_in_order() -> None:
    """A letterbox of whole strides makes other shapes for other aspect ratios: each shape is its own call, and each
    image's answer is its own (never its batch-mates')."""
    from services.models.detection import DetectParams, YoloxDetector
    from services.models.spec import InputSpec, Letterbox

    letterboxed = InputSpec(height=128, width=128, color_order="BGR", interpolation="cv2_linear", resize="letterbox")
    letterboxed = letterboxed.model_copy(update={"letterbox": Letterbox(stride=32)})
    detector_spec = make_spec(name="contract-shapes", task="detection", arch="yolox", labels=["a", "b"])
    detector_spec = detector_spec.model_copy(update={"input": letterboxed, "extra": {"strides": [32]}})

    def rows(batch: np.ndarray) -> np.ndarray:  # one row per cell; the class score says which batch it came in
        cells = (batch.shape[2] // 32) * (batch.shape[3] // 32)
        out = np.zeros((len(batch), cells, 7), dtype=np.float32)
        out[:, 0] = [0.5, 0.5, 0.0, 0.0, 10.0, 10.0 if batch.shape[3] == 128 else -10.0, -10.0]
        out[:, 0, 6] = -out[:, 0, 5]
        return out

    runner = FakeRunner(fn=rows)
    model = YoloxDetector(detector_spec, runner)
    wide, tall, square = (
        np.zeros((30, 60, 3), np.uint8),
        np.zeros((60, 30, 3), np.uint8),
        np.zeros((60, 60, 3), np.uint8),
    )
    predictions = model.infer([wide, tall, wide, square], [DetectParams()] * 4)
    assert [b.shape for b in runner.batches] == [(2, 3, 96, 128), (1, 3, 128, 96), (1, 3, 128, 128)]
    labels = [p.result["detections"][0]["label"] for p in predictions]
    assert labels == ["a", "b", "a", "a"]  # wide and square: 128 columns -> class a; tall: class b


def test_a_single_image_goes_to_the_runner_without_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[np.ndarray] = []
    runner = FakeRunner([0.0, 1.0, 2.0])
    model = Classifier(spec("contract-one"), runner)
    original = model.preprocess

    def noting(image: np.ndarray) -> object:
        prepared = original(image)
        made.append(prepared.tensor)
        return prepared

    monkeypatch.setattr(model, "preprocess", noting)
    model.infer(images(1), [ClassifyParams(top_k=1)])
    batch = runner.batches[0]
    assert batch.shape == (1, 3, 8, 8) and batch.flags.c_contiguous
    assert np.shares_memory(batch, made[0])  # a view of the one tensor, not a stacked copy
    model.infer(images(2), [ClassifyParams(top_k=1)] * 2)
    assert not np.shares_memory(runner.batches[1], made[1])  # several are stacked


def test_infer_passes_each_image_its_own_params() -> None:
    model = Classifier(spec("contract-params"), FakeRunner([0.0, 1.0, 2.0]))
    predictions = model.infer(images(2), [ClassifyParams(top_k=1), ClassifyParams(top_k=3)])
    assert [len(p.result["predictions"]) for p in predictions] == [1, 3]


def test_infer_rejects_params_of_different_length() -> None:
    runner = FakeRunner()
    with pytest.raises(ValueError, match="same length"):
        Classifier(spec("contract-len"), runner).infer(images(2), [ClassifyParams()])
    assert runner.batches == []


def test_infer_of_no_images_runs_nothing() -> None:
    runner = FakeRunner()
    assert Classifier(spec("contract-empty"), runner).infer([], []) == []
    assert runner.batches == []


def test_infer_times_each_stage() -> None:
    def slow(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return np.zeros((len(batch), 3), np.float32)

    name = "contract-timing"
    model = Classifier(spec(name), FakeRunner(fn=slow), precision="int8")
    before = {
        stage: sample("cv_inference_stage_seconds_count", {"model": name, "version": "v7", "stage": stage})
        for stage in ("preprocess", "predict", "postprocess")
    }
    predictions = model.infer(images(2), [ClassifyParams()] * 2)
    timings = predictions[0].timings_ms
    assert set(timings) == {"preprocess", "predict", "postprocess", "batch_size"}
    assert timings["batch_size"] == 2.0
    assert timings["predict"] >= 20.0
    assert 0.0 <= timings["preprocess"] < timings["predict"]
    assert predictions[0].timings_ms == predictions[1].timings_ms
    for stage, count in before.items():
        labels = {"model": name, "version": "v7", "stage": stage}
        assert sample("cv_inference_stage_seconds_count", labels) == count + 1
    assert sample("cv_inference_batch_size_sum", {"model": name, "version": "v7"}) >= 2
    assert {(p.model, p.version, p.precision) for p in predictions} == {(name, "v7", "int8")}


def test_infer_propagates_runner_failure() -> None:
    model = Classifier(spec("contract-fail"), FakeRunner(error=RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        model.infer(images(1), [ClassifyParams()])


def test_infer_runs_a_runner_of_bounded_batch_slice_by_slice() -> None:
    """Each slice is preprocessed just before its run, and the answers are those of one whole-batch run."""
    events: list[str] = []

    def scores(batch: np.ndarray) -> np.ndarray:
        events.append(f"run {len(batch)}")
        means = batch.reshape(len(batch), -1).mean(axis=1)
        return np.stack([means, -means, means * means], axis=1).astype(np.float32)

    sliced = Classifier(spec("contract-sliced"), FakeRunner(fn=scores))
    sliced.runner.max_batch = 2  # type: ignore[attr-defined]  # as OrtRunner says on the CPU
    whole = Classifier(spec("contract-whole"), FakeRunner(fn=scores))
    preprocess = sliced.preprocess

    def noted(image: np.ndarray) -> object:
        events.append("pre")
        return preprocess(image)

    sliced.preprocess = noted  # type: ignore[method-assign]
    params = [ClassifyParams(top_k=3)] * 5
    answers = [p.result for p in sliced.infer(images(5), params)]
    assert events == ["pre", "pre", "run 2", "pre", "pre", "run 2", "pre", "run 1"]
    assert answers == [p.result for p in whole.infer(images(5), params)]
