"""Import the classifier into the BentoML model store.

- ``v2`` (default, stage production): EfficientNet-Lite0 fine-tuned on Tiny-ImageNet-200
  (200 classes), FP32 and INT8, from ``artifacts/lite0_tiny_imagenet200`` (``make train``
  then ``make release``).
- ``v1``: the ImageNet-1k export (1000 classes) from ``artifacts/efficientnet_lite0_imagenet1k``.

Usage: python bentos/classifier/import_model.py [--version v2] [--stage production] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bentos.lite0_common import lite0_input, lite0_spec
from services.config import ServingSettings, Stage
from services.models.importer import main, verify_checksum
from services.models.spec import ModelSpec

FINETUNED_DIR = "lite0_tiny_imagenet200"
IMAGENET_VERSION = "v1"


def finetuned_spec(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    """The Tiny-ImageNet fine-tune: both files checked against the release's report."""
    folder = settings.artifacts_dir / FINETUNED_DIR
    export = json.loads((folder / "export.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    files = {precision: folder / entry["name"] for precision, entry in metrics["files"].items()}
    for precision, path in files.items():
        verify_checksum(path, metrics["files"][precision]["sha256"])
    fp32, int8 = metrics["metrics"]["fp32"], metrics["metrics"].get("int8", {})
    spec = ModelSpec(
        name="classifier",
        version=args.version,
        task="classification",
        arch="efficientnet_lite0",
        stage=Stage(args.stage),
        input=lite0_input(export),
        output_name="logits",
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


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    if args.version == IMAGENET_VERSION:
        return lite0_spec(args, settings, name="classifier", task="classification", output_name="logits")
    return finetuned_spec(args, settings)


if __name__ == "__main__":
    main(__doc__ or "", "v2", build)
