"""Image classification: softmax over logits, top-k labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from services.models.contract import Model, Params
from services.models.preprocessing import Prepared
from services.models.sketch import sketch_of


class ClassifyParams(Params):
    top_k: int = Field(default=5, ge=1, le=1000)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


class Classifier(Model[ClassifyParams]):
    task = "classification"
    params_type = ClassifyParams

    def sketch(self, output: np.ndarray) -> list[float] | None:
        """The class-probability vector, projected (services/models/sketch.py)."""
        return sketch_of(softmax(output.astype(np.float64).reshape(-1)))

    def postprocess(self, output: np.ndarray, prepared: Prepared, params: ClassifyParams) -> dict[str, Any]:
        probs = softmax(output.astype(np.float64))
        k = min(params.top_k, probs.shape[-1])
        top = np.argpartition(-probs, k - 1)[:k]
        top = top[np.argsort(-probs[top], kind="stable")]
        ids = self.spec.extra.get("label_ids") or []
        return {
            "predictions": [
                {
                    "class_id": int(i),
                    "label": self.spec.labels[i] if i < len(self.spec.labels) else str(i),
                    **({"label_id": ids[i]} if i < len(ids) else {}),
                    "score": float(probs[i]),
                }
                for i in top
            ]
        }
