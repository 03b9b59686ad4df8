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

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """One runtime call; with ``flip``, on the batch and its mirror images: N x 2 x D, the views side by side."""
        head = self.spec.embedding
        if head is None or not head.flip:
            return self.runner(batch)
        n = len(batch)
        output = self.runner(np.concatenate([batch, batch[..., ::-1]]))
        return np.stack([output[:n], output[n:]], axis=1)

    def vector(self, output: np.ndarray) -> np.ndarray:
        """One image's raw output (a row, or one row per view) -> the L2-normalised embedding.

        Each view is transformed (``softmax``: its class probabilities), then the views are averaged.
        """
        head = self.spec.embedding
        views = output.astype(np.float64).reshape(-1, output.shape[-1])
        if head is not None and head.transform == "softmax":
            scaled = views / head.temperature
            probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
            views = probabilities / probabilities.sum(axis=1, keepdims=True)
        vector = views.mean(axis=0).astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if norm > 0 and abs(norm - 1.0) > 1e-3:  # the graph normalises; guard exports that do not
            vector = vector / norm
        return vector
