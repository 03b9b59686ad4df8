"""Image embeddings: the network's pooled features, or a classifier's class probabilities, L2-normalised."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.models.contract import Model, Params
from services.models.preprocessing import Prepared
from services.models.sketch import sketch_of


class EmbedParams(Params):
    pass


class Embedder(Model[EmbedParams]):
    task = "embedding"
    params_type = EmbedParams

    def sketch(self, output: np.ndarray) -> list[float] | None:
        """The embedding vector, projected (services/models/sketch.py)."""
        return sketch_of(self.vector(output))

    def postprocess(self, output: np.ndarray, prepared: Prepared, params: EmbedParams) -> dict[str, Any]:
        vector = self.vector(output)
        return {"embedding": vector.tolist(), "dim": int(vector.shape[0])}

    def vector(self, output: np.ndarray) -> np.ndarray:
        """One raw output row -> the L2-normalised embedding."""
        vector = output.astype(np.float32).reshape(-1)
        head = self.spec.embedding
        if head is not None and head.transform == "softmax":
            scaled = vector.astype(np.float64) / head.temperature
            probabilities = np.exp(scaled - scaled.max())
            vector = (probabilities / probabilities.sum()).astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if norm > 0 and abs(norm - 1.0) > 1e-3:  # the graph normalises; guard exports that do not
            vector = vector / norm
        return vector
