"""Object detection with YOLOX: grid decoding, class-aware NMS, boxes in original pixels.

The decoding follows ../shared/models/README.md: rows are grid cells of strides 8, 16
and 32 in that order, row-major; ``obj`` and class values are already probabilities.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from services.models.contract import Model, Params
from services.models.preprocessing import Prepared


class DetectParams(Params):
    confidence: float = Field(default=0.25, ge=0.0, le=1.0)
    iou: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=1000)
    classes: tuple[int, ...] | None = None
    # The image was decoded at 1/reduction of its uploaded size (services/imaging.py, DecodeFloor): boxes are
    # answered in the upload's pixels, (width, height) = source_size. Set by the api, not by callers, and left out
    # of dumps (reports list the parameters a caller chose).
    reduction: int = Field(default=1, ge=1, le=8, exclude=True)
    source_size: tuple[int, int] | None = Field(default=None, exclude=True)

    @field_validator("classes")
    @classmethod
    def _non_negative(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(c < 0 for c in value):
            raise ValueError("class ids are non-negative")
        return value


def make_grid(height: int, width: int, strides: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell coordinates (N x 2) and each cell's stride (N x 1), in YOLOX row order."""
    grids, cell_strides = [], []
    for stride in strides:
        gh, gw = height // stride, width // stride
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full((gh * gw, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def decode_yolox(
    raw: np.ndarray, grid: np.ndarray, strides: np.ndarray, min_score: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rows [tx, ty, tw, th, obj, cls...] -> boxes (x1, y1, x2, y2), scores, class ids of the rows that can score
    ``min_score``; the caller still filters on the scores.

    A row's score is its objectness times its best class score, sigmoid outputs both (at most 1, or half a
    quantization step over it from an INT8 file), so a row whose objectness is under half of ``min_score`` cannot
    reach it and is not decoded: a photo's 3,549 rows come down to a few dozen, and postprocessing from ~340 to
    ~25 us (the argmax over 80 classes of every row was most of it). Exact while class scores stay under 2.
    """
    rows = np.flatnonzero(raw[:, 4] >= min_score / 2) if min_score > 0 else slice(None)
    candidates, grid, strides = raw[rows], grid[rows], strides[rows]
    centres = (candidates[:, :2] + grid) * strides
    sizes = np.exp(np.minimum(candidates[:, 2:4], 20.0)) * strides  # clamp: exp overflow on garbage rows
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    class_scores = candidates[:, 5:]
    class_ids = class_scores.argmax(axis=1)
    scores = candidates[:, 4] * class_scores[np.arange(len(candidates)), class_ids]
    return boxes, scores, class_ids


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box against many (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(boxes.max() - boxes.min()) + 1.0  # boxes may reach past the image (negative coordinates)
    offsets = class_ids.astype(np.float32)[:, None] * span
    return nms(boxes + offsets, scores, iou, limit)


class YoloxDetector(Model[DetectParams]):
    task = "detection"
    params_type = DetectParams

    @cached_property
    def _grids(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        return {}

    def _grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The grid of an input of ``height`` x ``width`` (the whole input, or a letterbox of whole strides)."""
        grid = self._grids.get((height, width))
        if grid is None:
            strides = list(self.spec.extra.get("strides", [8, 16, 32]))
            grid = self._grids[(height, width)] = make_grid(height, width, strides)
        return grid

    def postprocess(self, output: np.ndarray, prepared: Prepared, params: DetectParams) -> dict[str, Any]:
        grid, strides = self._grid(*prepared.tensor.shape[-2:])
        if len(grid) != len(output):
            size = prepared.tensor.shape[-2:]
            raise ValueError(f"{len(output)} output rows for an input of {size}: {len(grid)} expected")
        boxes, scores, class_ids = decode_yolox(output, grid, strides, min_score=params.confidence)
        keep = scores >= params.confidence
        if params.classes is not None:
            keep &= np.isin(class_ids, np.asarray(params.classes))
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        kept = batched_nms(boxes, scores, class_ids, params.iou, params.max_detections)
        width, height = prepared.original_size
        dx, dy = prepared.offset
        boxes = (boxes[kept] - np.asarray([dx, dy, dx, dy], dtype=np.float32)) / prepared.scale
        boxes = np.clip(boxes, 0, [width, height, width, height])
        if params.reduction > 1:  # decoded pixel x covers upload pixels [x * r, (x + 1) * r)
            width, height = params.source_size or (width * params.reduction, height * params.reduction)
            boxes = np.clip(boxes * np.float32(params.reduction), 0, [width, height, width, height])
        return {
            "detections": [
                {
                    "box": {"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3])},
                    "class_id": int(c),
                    "label": self.spec.labels[c] if c < len(self.spec.labels) else str(c),
                    "score": float(s),
                }
                for b, c, s in zip(boxes, class_ids[kept], scores[kept], strict=True)
            ]
        }
