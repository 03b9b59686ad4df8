"""FastAPI + ONNX Runtime image classifier: one sync handler, PIL resize to 224, no batching.

PEER_MODEL: the ONNX file (the product's INT8 or FP32 classifier); PEER_LABELS: its labels.json;
PEER_THREADS: ONNX Runtime intra-op threads (2). Run: uvicorn --app-dir benchmarks/peers ort_classifier:app
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "2"))
session = ort.InferenceSession(os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"])
labels = [label["name"] for label in json.loads(Path(os.environ["PEER_LABELS"]).read_text())]
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/classify")
def classify(image: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 5) -> dict[str, Any]:
    try:
        picture = Image.open(io.BytesIO(image.file.read())).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise HTTPException(400, f"not an image: {exc}") from exc
    pixels = np.asarray(picture.resize((224, 224), Image.Resampling.BICUBIC), dtype=np.float32)
    tensor = ((pixels - 127.0) / 128.0).transpose(2, 0, 1)[None]
    (logits,) = session.run(["logits"], {"images": tensor})
    exp = np.exp(logits[0] - logits[0].max())
    probs = exp / exp.sum()
    top = np.argsort(-probs)[:top_k]
    return {"predictions": [{"class_id": int(i), "label": labels[i], "score": float(probs[i])} for i in top]}
