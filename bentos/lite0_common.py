"""The EfficientNet-Lite0 ImageNet-1k export shared by the classifier and the embedder.

One ONNX file (``artifacts/efficientnet_lite0_imagenet1k/model.onnx``, made by
``python -m training.export lite0``) has two outputs: ``logits`` and ``embeddings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.config import ServingSettings
from services.models.spec import InputSpec

EXPORT_DIR = "efficientnet_lite0_imagenet1k"


def lite0_files(settings: ServingSettings) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """The ONNX path, its export report and its labels."""
    folder = settings.artifacts_dir / EXPORT_DIR
    report = json.loads((folder / "export.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    return folder / "model.onnx", report, labels


def lite0_input(report: dict[str, Any]) -> InputSpec:
    """Preprocessing from the export report: RGB, bicubic, (x - 127) / 128."""
    pre = report["preprocessing"]
    size = int(pre["input_size"])
    return InputSpec(
        name="images",
        height=size,
        width=size,
        color_order=pre["color_order"],
        mean=tuple(pre["mean"]),
        std=tuple(pre["std"]),
        interpolation="pil_bicubic",
        resize="crop",
        crop_pct=1.0,
    )
