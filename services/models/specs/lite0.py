"""Specs of the EfficientNet-Lite0 models, built from the committed exports under ``artifacts/``.

- The ImageNet-1k export (``efficientnet_lite0_imagenet1k/model.onnx``, made by ``python -m training.export
  lite0``), shared by the classifier's ``v1`` and the embedder: one ONNX file with two outputs, ``logits`` and
  ``embeddings``. Its static INT8 QDQ version (``model.int8.onnx``, made by ``python -m training.quantize``;
  every variant tried and the chosen one are in ``quantization.json``) is registered next to it as ``int8``.
- The Tiny-ImageNet-200 releases (:data:`FINETUNED_DIRS`: ``v2`` made by ``make train`` then ``make release``,
  ``v4`` the weight average of ``v2`` and ``v3``, ``v6`` of ``v2``, ``v3`` and ``v5``, ``v8`` of ``v2``, ``v3``,
  ``v5`` and ``v7``; the candidates ``v3``, ``v5`` and ``v7``, the soups' ingredients, under ``candidates/``): FP32 and
  INT8 files checked against the release's ``metrics.json``. The embedder of the same version reads the same files:
  its vector is the classifier's class probabilities (``EmbeddingOutput``), measured in ``embedder.metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.config import Stage
from services.models.spec import EmbeddingOutput, InputSpec, ModelSpec, Task

EXPORT_DIR = "efficientnet_lite0_imagenet1k"
# Each Tiny-ImageNet release in its own folder, by the version it was released as (`python -m training.release
# --version`); the embedder of the same version reads the same folder's files. A release never promoted lives under
# candidates/, out of `python -m training.model_card --all`'s reach (the bentos' cards describe the newest release).
# v4 is the weight average of v2 and v3 (`python -m training.soup`), v6 of v2, v3 and v5, v8 of v2, v3, v5 and v7
# (ADR 0016).
# The release `make import-models` imports as production (the classifier's and the embedder's import scripts'
# default), and whose files benchmarks/formats.py times.
SERVED = "v8"
# The release SERVED replaced, which `make import-models` keeps archived for a rollback.
PREVIOUS = "v6"
FINETUNED_DIRS: dict[str, str] = {
    "v2": "lite0_tiny_imagenet200",
    "v3": "candidates/lite0_tiny_imagenet200_v3",
    "v4": "lite0_tiny_imagenet200_v4",
    "v5": "candidates/lite0_tiny_imagenet200_v5",
    "v6": "lite0_tiny_imagenet200_v6",
    "v7": "candidates/lite0_tiny_imagenet200_v7",
    "v8": "lite0_tiny_imagenet200_v8",
}
INT8_FILE = "model.int8.onnx"
QUANTIZATION_REPORT = "quantization.json"
# Embedder v2's model-card report: what `python -m training.evaluate embedder --class-probabilities 1.0` measured.
CLASS_EMBEDDER_REPORT = "embedder.metrics.json"
# No query expansion by default: what it gives depends on how many images of a class the gallery holds (ADR 0015).
CLASS_EMBEDDING = EmbeddingOutput(transform="softmax", temperature=1.0)
# The output each task reads from a Lite0 export (the classifier's logits, the embedder's pooled features).
OUTPUTS: dict[Task, str] = {"classification": "logits", "embedding": "embeddings"}


def _verify_checksum(path: Path, expected: str) -> None:
    # Imported here: the importer loads BentoML, which the offline tools reading lite0_input do not need.
    from services.models.importer import verify_checksum

    verify_checksum(path, expected)


def lite0_files(artifacts_dir: Path) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """The ImageNet-1k export's ONNX path, its export report and its labels."""
    folder = artifacts_dir / EXPORT_DIR
    report = json.loads((folder / "export.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    return folder / "model.onnx", report, labels


def lite0_int8(artifacts_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The committed INT8 file, checked against its report, and the report's chosen variant.

    Args:
        artifacts_dir: The folder holding ``efficientnet_lite0_imagenet1k/``.

    Returns:
        ``None`` when there is no INT8 file (the entry then holds FP32 only).

    Raises:
        ValueError: the file's checksum is not the one the report measured.
    """
    folder = artifacts_dir / EXPORT_DIR
    path, report_path = folder / INT8_FILE, folder / QUANTIZATION_REPORT
    if not path.is_file() or not report_path.is_file():
        return None
    chosen: dict[str, Any] = json.loads(report_path.read_text())["chosen"]
    _verify_checksum(path, chosen["sha256"])
    return path, chosen


def int8_metrics(chosen: dict[str, Any]) -> dict[str, Any]:
    """What the model card and ``GET /models`` show for the INT8 file of the quantization report's ``chosen``."""
    return {
        "tiny_imagenet_val_precision_at_10": chosen["precision_at_10"],
        "delta_precision_at_10_vs_fp32": chosen["delta_precision_at_10"],
        "calibration": f"{chosen['calibration_images']} Tiny-ImageNet train images",
        "recipe": chosen["name"],
    }


def lite0_input(report: dict[str, Any]) -> InputSpec:
    """Preprocessing from an export report (``export.json``): RGB, bicubic, (x - 127) / 128.

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
    artifacts_dir: Path, *, name: str, task: Task, version: str, stage: Stage = Stage.PRODUCTION
) -> tuple[ModelSpec, dict[str, Path]]:
    """A model-store spec over the ImageNet-1k export, reading the output of ``task``.

    Args:
        artifacts_dir: The folder holding ``efficientnet_lite0_imagenet1k/``.
        name: The model's name in the store (``classifier`` or ``embedder``).
        task: ``classification`` (logits, 1000 labels) or ``embedding`` (1280-d features).
        version: The entry's version label.
        stage: The entry's stage.

    Returns:
        The spec and its files (precision -> path).

    Raises:
        FileNotFoundError, ValueError: a file is missing or its checksum is not the reported one.
    """
    onnx_path, report, labels = lite0_files(artifacts_dir)
    _verify_checksum(onnx_path, report["onnx"]["sha256"])
    files = {"fp32": onnx_path}
    metrics: dict[str, Any] = {
        "tiny_imagenet_val_zero_shot": report["accuracy_tiny_imagenet"],
        "parity": report["parity"],
    }
    int8 = lite0_int8(artifacts_dir)
    if int8 is not None:
        files["int8"] = int8[0]
        metrics["int8"] = int8_metrics(int8[1])
    classifying = task == "classification"
    spec = ModelSpec(
        name=name,
        version=version,
        task=task,
        arch="efficientnet_lite0",
        stage=stage,
        input=lite0_input(report),
        output_name=OUTPUTS[task],
        labels=[entry["name"] for entry in labels] if classifying else [],
        files={precision: path.name for precision, path in files.items()},
        licence=report["license"]["spdx"],
        source=f"{report['source']['package']}=={report['source']['version']} via timm {report['timm_model']}",
        metrics=metrics,
        extra={"training_data": "ImageNet-1k"}
        | ({"label_ids": [entry["wnid"] for entry in labels]} if classifying else {"dim": 1280}),
    )
    return spec, files


def finetuned_dir(version: str) -> str:
    """The artifacts folder of the Tiny-ImageNet release named ``version``.

    Raises:
        ValueError: no release has that name.
    """
    try:
        return FINETUNED_DIRS[version]
    except KeyError:
        raise ValueError(f"no Tiny-ImageNet release is named {version!r}; released: {sorted(FINETUNED_DIRS)}") from None


def finetuned_spec(
    artifacts_dir: Path, *, version: str, stage: Stage = Stage.PRODUCTION
) -> tuple[ModelSpec, dict[str, Path]]:
    """The classifier fine-tuned on Tiny-ImageNet-200: both files checked against the release's report.

    Args:
        artifacts_dir: The folder holding the releases' folders (``lite0_tiny_imagenet200/``, ...).
        version: The release, and the entry's version label (:data:`FINETUNED_DIRS`).
        stage: The entry's stage.

    Returns:
        The spec and its files (precision -> path).

    Raises:
        FileNotFoundError, ValueError: no such release, a file is missing or its checksum is not the released one.
    """
    folder = artifacts_dir / finetuned_dir(version)
    export = json.loads((folder / "export.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    files = {precision: folder / entry["name"] for precision, entry in metrics["files"].items()}
    for precision, path in files.items():
        _verify_checksum(path, metrics["files"][precision]["sha256"])
    fp32, int8 = metrics["metrics"]["fp32"], metrics["metrics"].get("int8", {})
    spec = ModelSpec(
        name="classifier",
        version=version,
        task="classification",
        arch="efficientnet_lite0",
        stage=stage,
        input=lite0_input(export),
        output_name=OUTPUTS["classification"],
        labels=[entry["name"] for entry in labels],
        files={precision: path.name for precision, path in files.items()},
        licence=export["license"]["spdx"],
        source=f"timm {export['timm_model']} from {export['base']}; {metrics['source']}",
        metrics={"tiny_imagenet_val": metrics["metrics"]}
        | ({"int8_top1_delta": round(int8["top1"] - fp32["top1"], 4)} if "top1" in int8 else {}),
        extra={
            "training_data": "Tiny-ImageNet-200 train, first 250 images per class (non-commercial research use)",
            "label_ids": [entry["wnid"] for entry in labels],
            "words": [entry["words"] for entry in labels],
        },
    )
    return spec, files


def class_embedder_spec(
    artifacts_dir: Path, *, version: str, stage: Stage = Stage.PRODUCTION
) -> tuple[ModelSpec, dict[str, Path]]:
    """The embedder over the Tiny-ImageNet fine-tune's files: the class-probability vector of each image.

    Images the classifier takes for the same classes land close together, so a search finds same-class
    images (precision@10 on val 0.735 for ``v8`` in INT8, against 0.35 for the ImageNet features of ``v1``; 0.749
    with a search's ``expand=10``); within a class, neighbours are ranked by how alike their class probabilities are,
    not by appearance alone.

    Args:
        artifacts_dir: The folder holding the releases' folders.
        version: The classifier release whose files it reads, and the entry's version label.
        stage: The entry's stage.

    Returns:
        The spec and its files (precision -> path), the classifier release's own, checksum-checked.
    """
    classifier, files = finetuned_spec(artifacts_dir, version=version, stage=stage)
    report_path = artifacts_dir / finetuned_dir(version) / CLASS_EMBEDDER_REPORT
    measured = json.loads(report_path.read_text())["metrics"] if report_path.is_file() else {}
    spec = classifier.model_copy(
        update={
            "name": "embedder",
            "task": "embedding",
            "embedding": CLASS_EMBEDDING,
            "labels": [],
            "metrics": {f"tiny_imagenet_val_{p}": r for p, r in measured.items()},
            "extra": {
                "training_data": classifier.extra["training_data"],
                "dim": len(classifier.labels),
                "embedding": "softmax of the fine-tuned classifier's 200 logits, L2-normalised",
            },
        }
    )
    return spec, files
