"""The serving pipeline in process, for the offline tools (evaluation, calibration).

Specs come from the same builders as the model-store imports (``services/models/specs/``), models from the
serving registry (``services.models.registry.family_for``) over an :class:`OrtRunner`, and
images are decoded by the upload decoder, so what is measured here is what is served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from services.imaging import decode_image
from services.models.catalogue import MODEL_NAMES, entry
from services.models.contract import Model
from services.models.registry import family_for
from services.models.runtime import OrtRunner
from services.models.spec import EmbeddingOutput, ModelSpec
from services.models.specs import lite0, yolox

# A served model's name in the catalogue (services/models/catalogue.py): whose spec, preprocessing and metric.
Kind = str
KINDS: tuple[Kind, ...] = MODEL_NAMES
# Offline tools share the machine with training: one thread per session unless asked otherwise.
DEFAULT_THREADS = 1
_MAX_BYTES = 1 << 30
_MAX_PIXELS = 1 << 31


def read_rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, decoded exactly as an upload would be."""
    data = Path(path).read_bytes()
    return decode_image(data, declared_type=None, max_bytes=_MAX_BYTES, max_pixels=_MAX_PIXELS).pixels


def lite0_export_dir(onnx_path: Path, artifacts_dir: Path) -> Path:
    """The folder whose ``export.json`` describes ``onnx_path``: its own, else the committed export's."""
    own = Path(onnx_path).parent
    return own if (own / "export.json").is_file() else artifacts_dir / lite0.EXPORT_DIR


def _size_is_symbolic(onnx_path: Path) -> bool:
    """Whether the file's image input has a symbolic height and width (training/yolox_batch.py's rewrite), so serving
    letterboxes to whole strides; False for a fixed size or a missing file."""
    if not onnx_path.is_file():
        return False
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(dim.dim_param for dim in dims[2:])


def serving_spec(
    kind: Kind,
    onnx_path: Path,
    artifacts_dir: Path,
    *,
    precision: str = "fp32",
    embedding: EmbeddingOutput | None = None,
) -> ModelSpec:
    """The spec serving builds for ``kind``, pointing at ``onnx_path``.

    Args:
        kind: Which service's model (a catalogue name).
        onnx_path: The file to run (FP32 or INT8, batch-1 or dynamic). A detector file letterboxes to whole strides
            when its image size is symbolic, else to the whole 416 x 416 (its fixed input).
        artifacts_dir: Where the committed exports live (a Lite0 file without its own ``export.json``).
        precision: The precision label the file is registered under.
        embedding: For an embedder made from a classifier's file: how its logits become the vector
            (``EmbeddingOutput(transform="softmax")``, embedder v2); None reads the pooled features.

    Raises:
        UnknownModel: ``kind`` is not in the catalogue.
    """
    files = {precision: Path(onnx_path).name}
    task = entry(kind).task
    if task == "detection":
        # The mirror file, or an older import (a fixed size): the whole 416 x 416.
        stride = yolox.LETTERBOX_STRIDE if _size_is_symbolic(Path(onnx_path)) else 0
        return yolox.detector_spec(version="eval", files=files, metrics={}, stride=stride)
    report = json.loads((lite0_export_dir(onnx_path, artifacts_dir) / "export.json").read_text())
    return ModelSpec(
        name=kind,
        version="eval",
        task=task,
        arch="efficientnet_lite0",
        input=lite0.lite0_input(report),
        output_name=lite0.OUTPUTS["classification"] if embedding is not None else lite0.OUTPUTS[task],
        embedding=embedding,
        files=files,
    )


def build_model(spec: ModelSpec, path: Path, *, precision: str = "fp32", threads: int = DEFAULT_THREADS) -> Model[Any]:
    """The serving model class for ``spec`` over ``path`` on the CPU provider (as ``ModelPool`` loads it)."""
    runner = OrtRunner(
        Path(path),
        input_name=spec.input.name,
        output_name=spec.output_name,
        providers=["CPUExecutionProvider"],
        threads=threads,
    )
    return family_for(spec.task, spec.arch)(spec, runner, precision=precision)
