"""The EfficientNet-Lite0 ImageNet-1k export shared by the classifier and the embedder.

One ONNX file (``artifacts/efficientnet_lite0_imagenet1k/model.onnx``, made by
``python -m training.export lite0``) has two outputs: ``logits`` and ``embeddings``. Its static
INT8 QDQ version (``model.int8.onnx``, made by ``python -m training.quantize``; every variant
tried and the chosen one are in ``quantization.json``) is registered next to it as ``int8``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from services.config import ServingSettings, Stage
from services.models.importer import verify_checksum
from services.models.spec import InputSpec, ModelSpec, Task

EXPORT_DIR = "efficientnet_lite0_imagenet1k"
INT8_FILE = "model.int8.onnx"
QUANTIZATION_REPORT = "quantization.json"


def lite0_files(settings: ServingSettings) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """The ONNX path, its export report and its labels."""
    folder = settings.artifacts_dir / EXPORT_DIR
    report = json.loads((folder / "export.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    return folder / "model.onnx", report, labels


def lite0_int8(settings: ServingSettings) -> tuple[Path, dict[str, Any]] | None:
    """The committed INT8 file, checked against its report, and the report's chosen variant.

    Returns:
        ``None`` when there is no INT8 file (the entry then holds FP32 only).

    Raises:
        ValueError: the file's checksum is not the one the report measured.
    """
    folder = settings.artifacts_dir / EXPORT_DIR
    path, report_path = folder / INT8_FILE, folder / QUANTIZATION_REPORT
    if not path.is_file() or not report_path.is_file():
        return None
    chosen: dict[str, Any] = json.loads(report_path.read_text())["chosen"]
    verify_checksum(path, chosen["sha256"])
    return path, chosen


def int8_metrics(chosen: dict[str, Any]) -> dict[str, Any]:
    """What the model card and ``GET /models`` show for the INT8 file."""
    return {
        "tiny_imagenet_val_precision_at_10": chosen["precision_at_10"],
        "delta_precision_at_10_vs_fp32": chosen["delta_precision_at_10"],
        "calibration": f"{chosen['calibration_images']} Tiny-ImageNet train images",
        "recipe": chosen["name"],
    }


def lite0_input(report: dict[str, Any]) -> InputSpec:
    """Preprocessing from the export report: RGB, bicubic, (x - 127) / 128.

    Serving resizes the shorter side and centre-crops (crop_pct 1.0) where the export's accuracy
    check resized straight to 224x224: the two agree on square images (Tiny-ImageNet), and the crop
    keeps the aspect ratio of real photos.
    """
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


def lite0_spec(
    args: argparse.Namespace, settings: ServingSettings, *, name: str, task: Task, output_name: str
) -> tuple[ModelSpec, dict[str, Path]]:
    """A model-store spec over the Lite0 export, reading ``output_name`` for ``task``."""
    onnx_path, report, labels = lite0_files(settings)
    verify_checksum(onnx_path, report["onnx"]["sha256"])
    files = {"fp32": onnx_path}
    metrics: dict[str, Any] = {
        "tiny_imagenet_val_zero_shot": report["accuracy_tiny_imagenet"],
        "parity": report["parity"],
    }
    int8 = lite0_int8(settings)
    if int8 is not None:
        files["int8"] = int8[0]
        metrics["int8"] = int8_metrics(int8[1])
    classifying = task == "classification"
    spec = ModelSpec(
        name=name,
        version=args.version,
        task=task,
        arch="efficientnet_lite0",
        stage=Stage(args.stage),
        input=lite0_input(report),
        output_name=output_name,
        labels=[entry["name"] for entry in labels] if classifying else [],
        files={precision: path.name for precision, path in files.items()},
        licence=report["license"]["spdx"],
        source=f"{report['source']['package']}=={report['source']['version']} via timm {report['timm_model']}",
        metrics=metrics,
        extra={"training_data": "ImageNet-1k"}
        | ({"label_ids": [entry["wnid"] for entry in labels]} if classifying else {"dim": 1280}),
    )
    return spec, files
