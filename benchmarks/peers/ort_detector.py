"""FastAPI + ONNX Runtime YOLOX-Nano detector: one sync handler, letterbox and NMS in NumPy, no batching.

PEER_MODEL: the ONNX file (the product's detector file); PEER_THREADS: ONNX Runtime intra-op threads (2).
Run: uvicorn --app-dir benchmarks/peers ort_detector:app
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import cv2
import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, Form, HTTPException, UploadFile

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "2"))
session = ort.InferenceSession(os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"])
SIZE = 416
grids, strides = [], []
for s in (8, 16, 32):
    ys, xs = np.meshgrid(np.arange(SIZE // s), np.arange(SIZE // s), indexing="ij")
    grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
    strides.append(np.full((xs.size, 1), s))
GRID, STRIDE = np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, keep = np.argsort(-scores), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        xy1, xy2 = np.maximum(boxes[i, :2], boxes[rest, :2]), np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(xy2 - xy1, 0, None), axis=1)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) <= iou]
    return keep


@app.post("/detect")
def detect(
    image: Annotated[UploadFile, File()],
    confidence: Annotated[float, Form()] = 0.25,
    iou: Annotated[float, Form()] = 0.45,
) -> dict[str, Any]:
    picture = cv2.imdecode(np.frombuffer(image.file.read(), np.uint8), cv2.IMREAD_COLOR)  # BGR, as YOLOX wants
    if picture is None:
        raise HTTPException(400, "not an image")
    r = min(SIZE / picture.shape[0], SIZE / picture.shape[1])
    resized = cv2.resize(picture, (int(picture.shape[1] * r), int(picture.shape[0] * r)))
    canvas = np.full((SIZE, SIZE, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    (out,) = session.run(["output"], {"images": canvas.transpose(2, 0, 1)[None].astype(np.float32)})
    rows = out[0]
    centres, sizes = (rows[:, :2] + GRID) * STRIDE, np.exp(rows[:, 2:4]) * STRIDE
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1) / r
    class_ids = rows[:, 5:].argmax(1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + class_ids]
    mask = scores >= confidence
    boxes, scores, class_ids = boxes[mask], scores[mask], class_ids[mask]
    keep = nms(boxes + class_ids[:, None] * 4096.0, scores, iou)  # offset per class: class-aware NMS
    return {
        "detections": [
            {"box": [float(v) for v in boxes[i]], "class_id": int(class_ids[i]), "score": float(scores[i])}
            for i in keep
        ]
    }
