"""YOLOX decoding, IoU, NMS and the detector's postprocessing, on hand-made rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from services.models.detection import (
    DetectParams,
    YoloxDetector,
    batched_nms,
    box_iou,
    decode_yolox,
    make_grid,
    nms,
)
from services.models.preprocessing import Prepared
from services.models.spec import InputSpec, Letterbox
from tests.unit.fakes import FakeRunner, make_spec

NUM_CLASSES = 3
# A 32 x 32 input: 4x4 cells of stride 8, 2x2 of stride 16, 1 of stride 32.
GRID_ROWS = 16 + 4 + 1


def detector(runner: FakeRunner | None = None, labels: list[str] | None = None) -> YoloxDetector:
    spec = make_spec(
        name="detector",
        task="detection",
        arch="yolox",
        labels=labels if labels is not None else ["person", "bicycle"],
        input_spec=InputSpec(
            height=32,
            width=32,
            color_order="BGR",
            interpolation="cv2_linear",
            resize="letterbox",
            letterbox=Letterbox(),
        ),
    )
    return YoloxDetector(spec, runner or FakeRunner())


def row(tx: float, ty: float, tw: float, th: float, obj: float, classes: list[float]) -> np.ndarray:
    return np.asarray([tx, ty, tw, th, obj, *classes], dtype=np.float32)


def empty_output() -> np.ndarray:
    return np.zeros((GRID_ROWS, 5 + NUM_CLASSES), dtype=np.float32)


def prepared(
    scale: float = 0.5, offset: tuple[float, float] = (0.0, 4.0), size: tuple[int, int] = (64, 40)
) -> Prepared:
    return Prepared(tensor=np.zeros((3, 32, 32), np.float32), scale=scale, offset=offset, original_size=size)


# --- grid and decoding -----------------------------------------------------------------------


def test_make_grid_row_order_is_stride_then_row_major_x_fastest() -> None:
    grid, strides = make_grid(16, 32, [8, 16])
    expected = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1), (3, 1), (0, 0), (1, 0)]
    assert grid.tolist() == [list(map(float, xy)) for xy in expected]
    assert strides.ravel().tolist() == [8.0] * 8 + [16.0] * 2
    assert grid.dtype == strides.dtype == np.float32


def test_make_grid_yolox_416_has_3549_rows() -> None:
    grid, strides = make_grid(416, 416, [8, 16, 32])
    assert grid.shape == (3549, 2)
    assert strides.shape == (3549, 1)
    # The first stride-16 row follows the 52 * 52 stride-8 rows; the last cell is (12, 12) at stride 32.
    assert strides[2703, 0] == 8 and strides[2704, 0] == 16
    assert grid[-1].tolist() == [12.0, 12.0] and strides[-1, 0] == 32


def test_decode_yolox_hand_made_row() -> None:
    grid = np.asarray([[3.0, 1.0]], dtype=np.float32)
    strides = np.asarray([[8.0]], dtype=np.float32)
    raw = row(0.5, 0.25, math.log(2.0), 0.0, 0.8, [0.1, 0.9, 0.3])[None]
    boxes, scores, class_ids = decode_yolox(raw, grid, strides)
    # centre ((0.5 + 3) * 8, (0.25 + 1) * 8) = (28, 10); size (2 * 8, 1 * 8) = (16, 8).
    np.testing.assert_allclose(boxes, [[20.0, 6.0, 36.0, 14.0]], atol=1e-5)
    assert scores[0] == pytest.approx(0.8 * 0.9)
    assert class_ids.tolist() == [1]


def test_decode_yolox_clamps_huge_sizes_to_finite_boxes() -> None:
    raw = row(0.0, 0.0, 1000.0, 1000.0, 1.0, [1.0])[None]
    boxes, _, _ = decode_yolox(raw, np.zeros((1, 2), np.float32), np.ones((1, 1), np.float32))
    assert np.isfinite(boxes).all()


def test_decode_yolox_with_a_min_score_decodes_only_rows_that_can_reach_it() -> None:
    grid, strides = make_grid(416, 416, [8, 16, 32])
    rng = np.random.default_rng(7)
    raw = rng.normal(0.0, 1.0, (len(grid), 85)).astype(np.float32)
    raw[:, 4] = 1.0 / (1.0 + np.exp(5.0 - 2.0 * raw[:, 4]))  # objectness: a sigmoid, low in most cells
    raw[:, 5:] = 1.0 / (1.0 + np.exp(-3.0 * raw[:, 5:]))  # class scores: sigmoids
    raw[rng.choice(len(raw), 40, replace=False), 5] = 1.02  # half a quantization step over 1, as an INT8 file gives
    raw[0, 4], raw[0, 5] = 0.246, 1.02  # objectness under the min score, the product over it: must be decoded
    every = decode_yolox(raw, grid, strides)
    some = decode_yolox(raw, grid, strides, min_score=0.25)
    assert len(some[1]) < len(every[1]) / 2  # most rows are never decoded
    kept, kept_some = every[1] >= 0.25, some[1] >= 0.25
    assert kept.sum() > 20 and kept[0]
    for full, part in zip(every, some, strict=True):
        np.testing.assert_array_equal(full[kept], part[kept_some])  # the same boxes, scores and classes, in order


# --- IoU and NMS -----------------------------------------------------------------------------


def test_box_iou_identical_partial_and_disjoint() -> None:
    box = np.asarray([0, 0, 10, 10], dtype=np.float32)
    others = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=np.float32)
    np.testing.assert_allclose(box_iou(box, others), [1.0, 50 / 150, 0.0], atol=1e-6)


def test_box_iou_zero_area_boxes_give_zero_not_nan() -> None:
    box = np.asarray([5, 5, 5, 5], dtype=np.float32)
    result = box_iou(box, np.asarray([[5, 5, 5, 5]], dtype=np.float32))
    assert result.tolist() == [0.0]


def test_nms_suppresses_overlapping_and_keeps_separate_boxes_best_first() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.asarray([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    assert nms(boxes, scores, 0.45, 100).tolist() == [3, 2]


def test_nms_keeps_overlap_at_exactly_the_threshold() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=np.float32)
    scores = np.asarray([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, 1 / 3 + 1e-6, 100).tolist() == [0, 1]
    assert nms(boxes, scores, 0.3, 100).tolist() == [0]


def test_nms_respects_limit() -> None:
    boxes = np.asarray([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], dtype=np.float32)
    scores = np.asarray([0.1, 0.5, 0.3, 0.9, 0.7], dtype=np.float32)
    kept = nms(boxes, scores, 0.5, 3)
    assert kept.tolist() == [3, 4, 1]
    assert kept.dtype == np.int64


def test_nms_equal_scores_keep_input_order() -> None:
    boxes = np.asarray([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], dtype=np.float32)
    assert nms(boxes, np.full(3, 0.5, np.float32), 0.5, 10).tolist() == [0, 1, 2]


def test_nms_empty_input() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, 10).tolist() == []


def test_batched_nms_different_classes_never_suppress_each_other() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], dtype=np.float32)
    scores = np.asarray([0.9, 0.8, 0.7], dtype=np.float32)
    class_ids = np.asarray([0, 1, 0])
    assert batched_nms(boxes, scores, class_ids, 0.45, 100).tolist() == [0, 1]


def test_batched_nms_empty_input() -> None:
    kept = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5, 10)
    assert kept.tolist() == []
    assert kept.dtype == np.int64


def test_batched_nms_separates_classes_with_negative_coordinates() -> None:
    # Decoded boxes of objects at the image edge start left of / above the origin.
    boxes = np.asarray([[0, 0, 100, 100], [-101, -101, -1, -1]], dtype=np.float32)
    scores = np.asarray([0.9, 0.8], dtype=np.float32)
    assert batched_nms(boxes, scores, np.asarray([0, 1]), 0.45, 100).tolist() == [0, 1]


# --- postprocess -----------------------------------------------------------------------------


def output_with_two_boxes() -> np.ndarray:
    output = empty_output()
    # Stride-8 cell (x=1, y=2) is row 2 * 4 + 1 = 9: centre (12, 20), size 8 -> (8, 16, 16, 24).
    output[9] = row(0.5, 0.5, 0.0, 0.0, 0.9, [0.1, 0.9, 0.0])
    # The stride-32 cell is the last row: centre (16, 16), size 128 -> (-48, -48, 80, 80).
    output[20] = row(0.5, 0.5, math.log(4.0), math.log(4.0), 0.6, [0.0, 0.0, 0.5])
    return output


def test_postprocess_maps_boxes_to_original_pixels_and_clips() -> None:
    result = detector().postprocess(output_with_two_boxes(), prepared(), DetectParams(confidence=0.25))
    detections = result["detections"]
    assert [d["class_id"] for d in detections] == [1, 2]
    # (box - offset (0, 4)) / scale 0.5
    assert detections[0]["box"] == pytest.approx({"x1": 16.0, "y1": 24.0, "x2": 32.0, "y2": 40.0})
    assert detections[0]["score"] == pytest.approx(0.81)
    assert detections[0]["label"] == "bicycle"
    # (-48, -48, 80, 80) -> (-96, -104, 160, 152), clipped to the 64 x 40 original.
    assert detections[1]["box"] == pytest.approx({"x1": 0.0, "y1": 0.0, "x2": 64.0, "y2": 40.0})
    assert detections[1]["score"] == pytest.approx(0.3)
    assert detections[1]["label"] == "2"  # no label for class 2: its id


def test_postprocess_answers_in_the_uploaded_pixels_of_a_reduced_decode() -> None:
    """Decoded at 1/2 (imaging.DecodeFloor): the 64 x 40 pixels were a 127 x 79 upload; boxes double, then clip."""
    params = DetectParams(confidence=0.25, reduction=2, source_size=(127, 79))
    detections = detector().postprocess(output_with_two_boxes(), prepared(), params)["detections"]
    assert detections[0]["box"] == pytest.approx({"x1": 32.0, "y1": 48.0, "x2": 64.0, "y2": 79.0})
    assert detections[1]["box"] == pytest.approx({"x1": 0.0, "y1": 0.0, "x2": 127.0, "y2": 79.0})


def test_postprocess_confidence_filter() -> None:
    result = detector().postprocess(output_with_two_boxes(), prepared(), DetectParams(confidence=0.5))
    assert [d["class_id"] for d in result["detections"]] == [1]


def test_postprocess_classes_filter() -> None:
    result = detector().postprocess(output_with_two_boxes(), prepared(), DetectParams(classes=(2,)))
    assert [d["class_id"] for d in result["detections"]] == [2]


def test_postprocess_max_detections_keeps_best() -> None:
    result = detector().postprocess(output_with_two_boxes(), prepared(), DetectParams(max_detections=1))
    assert [d["score"] for d in result["detections"]] == [pytest.approx(0.81)]


def test_postprocess_suppresses_duplicate_of_same_class() -> None:
    output = output_with_two_boxes()
    output[10] = row(-0.4, 0.5, 0.0, 0.0, 0.8, [0.0, 1.0, 0.0])  # cell (2, 2): centre (12.8, 20), IoU 0.82
    output[8] = row(0.5, 0.5, 0.0, 0.0, 0.8, [0.0, 1.0, 0.0])  # cell (0, 2): centre (4, 20), IoU 0
    result = detector().postprocess(output, prepared(), DetectParams(iou=0.45))
    scores = sorted(round(d["score"], 3) for d in result["detections"] if d["class_id"] == 1)
    assert scores == [0.8, 0.81]


def test_postprocess_nothing_above_threshold_gives_empty_list() -> None:
    assert detector().postprocess(empty_output(), prepared(), DetectParams()) == {"detections": []}


def test_detector_infer_end_to_end_with_fake_runner() -> None:
    runner = FakeRunner(output_with_two_boxes())
    model = detector(runner)
    # 64 x 48 into 32 x 32 top-left: scale 0.5, no offset.
    (prediction,) = model.infer([np.zeros((48, 64, 3), np.uint8)], [DetectParams()])
    assert runner.batches[0].shape == (1, 3, 32, 32)
    first = prediction.result["detections"][0]
    assert first["box"] == pytest.approx({"x1": 16.0, "y1": 32.0, "x2": 32.0, "y2": 48.0})


def test_detector_uses_strides_from_spec_extra() -> None:
    model = detector()
    model.spec.extra["strides"] = [16]
    grid, strides = model._grid(32, 32)
    assert grid.shape == (4, 2)
    assert set(strides.ravel().tolist()) == {16.0}


def test_the_grid_follows_the_inputs_size_and_is_made_once_per_size() -> None:
    """A letterbox of whole strides gives a 3:4 photo a 416 x 320 input: 2,730 rows, not 3,549."""
    model = detector()
    full, wide = model._grid(416, 416), model._grid(416, 320)
    assert len(full[0]) == 3549 and len(wide[0]) == 52 * 40 + 26 * 20 + 13 * 10 == 2730
    assert model._grid(416, 320) is wide
    # row order: stride 8 first, x fastest, as the network writes them
    assert wide[0][:3].tolist() == [[0, 0], [1, 0], [2, 0]] and wide[0][40].tolist() == [0, 1]


def test_postprocess_decodes_on_the_grid_of_its_own_input() -> None:
    """A box in the last cell of a 32 x 64 input's stride-32 row lands at that cell, in original pixels."""
    model = detector()
    model.spec.extra["strides"] = [32]
    rows = np.zeros((2, 7), dtype=np.float32)  # 1 x 2 cells; 4 box values, objectness, 2 classes
    rows[1] = [0.5, 0.5, np.log(0.5), np.log(0.5), 10.0, 10.0, -10.0]
    prepared = Prepared(tensor=np.zeros((3, 32, 64), np.float32), scale=1.0, offset=(0.0, 0.0), original_size=(64, 32))
    box = model.postprocess(rows, prepared, DetectParams())["detections"][0]["box"]
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == (40.0, 8.0, 56.0, 24.0)


def test_postprocess_refuses_rows_of_another_size() -> None:
    model = detector()
    prepared = Prepared(tensor=np.zeros((3, 32, 64), np.float32), scale=1.0, offset=(0.0, 0.0), original_size=(64, 32))
    with pytest.raises(ValueError, match="output rows"):
        model.postprocess(np.zeros((21, 7), np.float32), prepared, DetectParams())


@pytest.mark.parametrize(
    "params",
    [{"confidence": 1.5}, {"iou": 0.0}, {"max_detections": 0}, {"classes": [-1]}, {"unknown": 1}],
)
def test_detect_params_reject_invalid_values(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DetectParams.model_validate(params)


def test_detect_params_accept_class_list() -> None:
    assert DetectParams.model_validate({"classes": [0, 2]}).classes == (0, 2)
