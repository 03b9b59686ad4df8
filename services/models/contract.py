"""The model contract: ``infer = preprocess -> predict -> postprocess``, each step timed.

A family module (classification, detection, embedding) only says what differs: its
parameters and its postprocessing. Batching happens in ``predict``: one ONNX Runtime
call for all images of a batch.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.metrics import INFERENCE_BATCH_SIZE, INFERENCE_STAGE
from services.models.preprocessing import Prepared, prepare
from services.models.spec import ModelSpec, Task

Runner = Callable[[np.ndarray], np.ndarray]


class Params(BaseModel):
    """Per-request parameters of a family; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=Params)


class Prediction(BaseModel):
    """One image's answer from one model version."""

    model: str
    version: str
    precision: str
    result: dict[str, Any]
    timings_ms: dict[str, float]
    # The drift sketch (services/models/sketch.py): SKETCH_DIM floats, or None for a family without one. It travels
    # to the api for the inference log; the public response bodies are built from ``result`` and never show it.
    sketch: list[float] | None = None


class Model(ABC, Generic[P]):
    """Base of every model family."""

    task: ClassVar[Task]
    params_type: ClassVar[type[Params]]

    def __init__(self, spec: ModelSpec, runner: Runner, *, precision: str = "fp32") -> None:
        self.spec = spec
        self.runner = runner
        self.precision = precision

    def preprocess(self, image: np.ndarray) -> Prepared:
        """RGB uint8 H x W x 3 -> network input, as the spec says."""
        return prepare(image, self.spec.input)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """One runtime call for the whole batch."""
        return self.runner(batch)

    def _predict_by_shape(self, tensors: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """The slice's raw outputs in its order: one runtime call when every tensor has one shape (always, but for a
        letterbox of whole strides, ``Letterbox.stride``, where photos of other aspect ratios make other shapes), else
        one call per shape. So an image's answer never depends on the other images of its batch."""
        shapes = [tensor.shape for tensor in tensors]
        if len(set(shapes)) == 1:
            return self.predict(_batch(tensors))
        outputs: list[np.ndarray] = [np.empty(0)] * len(tensors)
        for shape in dict.fromkeys(shapes):
            members = [i for i, other in enumerate(shapes) if other == shape]
            ran = self.predict(_batch([tensors[i] for i in members]))
            for row, i in enumerate(members):
                outputs[i] = ran[row]
        return outputs

    def sketch(self, output: np.ndarray) -> list[float] | None:
        """One image's raw output row -> its drift sketch; None (the default): this family has none."""
        return None

    @abstractmethod
    def postprocess(self, output: np.ndarray, prepared: Prepared, params: P) -> dict[str, Any]:
        """One image's raw output row -> its JSON-ready result."""

    def warm_up(self) -> None:
        """One synthetic image through preprocess, predict and postprocess, recorded nowhere.

        What the first request would otherwise pay is paid at start-up: the imports done on first use (OpenCV, which
        the detector's resize imports there to keep BentoML's supervisor light, ADR 0017: 160 ms), ONNX Runtime's first
        run. The image is not the input's size, so the resize runs.
        """
        spec = self.spec.input
        image = np.full((spec.height // 2 + 1, spec.width // 2 + 3, 3), 114, dtype=np.uint8)
        prepared = self.preprocess(image)
        output = self.predict(prepared.tensor[None])
        self.postprocess(output[0], prepared, cast(P, self.params_type()))  # the family's defaults

    def infer(self, images: Sequence[np.ndarray], params: Sequence[P]) -> list[Prediction]:
        """Run the whole contract over a batch, timing each stage.

        A runner that takes at most ``max_batch`` images per run (:class:`services.models.runtime.OrtRunner` on the
        CPU) gets the batch slice by slice, each slice preprocessed just before its run and postprocessed just after:
        only one slice's network inputs and raw outputs are alive at a time, whatever the batch size (a 16-image
        detector batch held 82 MB of them at once; benchmarks/reports/memory_ort.md). The runs are the same as the
        runner's own slicing would make.
        """
        if len(images) != len(params):
            raise ValueError("images and params must have the same length")
        if not images:
            return []
        labels = (self.spec.name, self.spec.version)
        n = len(images)
        step = getattr(self.runner, "max_batch", None) or n
        spent = {"preprocess": 0.0, "predict": 0.0, "postprocess": 0.0}
        results: list[dict[str, Any]] = []
        sketches: list[list[float] | None] = []
        for start in range(0, n, step):
            t0 = time.perf_counter()
            prepared = [self.preprocess(image) for image in images[start : start + step]]
            t1 = time.perf_counter()
            outputs = self._predict_by_shape([p.tensor for p in prepared])
            t2 = time.perf_counter()
            results += [self.postprocess(outputs[i], prepared[i], params[start + i]) for i in range(len(prepared))]
            sketches += [self.sketch(outputs[i]) for i in range(len(prepared))]
            t3 = time.perf_counter()
            del prepared, outputs  # before the next slice's are made
            spent["preprocess"] += t1 - t0
            spent["predict"] += t2 - t1
            spent["postprocess"] += t3 - t2
        for stage, seconds in spent.items():
            INFERENCE_STAGE.labels(*labels, stage).observe(seconds)
        INFERENCE_BATCH_SIZE.labels(*labels).observe(n)
        timings = {
            "preprocess": spent["preprocess"] * 1000 / n,
            "predict": spent["predict"] * 1000,
            "postprocess": spent["postprocess"] * 1000 / n,
            "batch_size": float(n),
        }
        return [
            Prediction(
                model=self.spec.name,
                version=self.spec.version,
                precision=self.precision,
                result=result,
                timings_ms=timings,
                sketch=sketched,
            )
            for result, sketched in zip(results, sketches, strict=True)
        ]


def _batch(tensors: list[np.ndarray]) -> np.ndarray:
    """The network input of a slice: one image's tensor as a batch of one without a copy (a 2 MB copy per detector
    image: detect p50 at concurrency 1 13.5 against 13.9 ms, two pairs of peers.py runs), several stacked."""
    return tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
