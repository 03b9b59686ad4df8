"""Import the embedder (EfficientNet-Lite0 pooled 1280-d features) into the BentoML model store.

Usage: python bentos/embedder/import_model.py [--version v1] [--stage production]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bentos.lite0_common import lite0_files, lite0_input  # noqa: E402
from services.config import ServingSettings, Stage  # noqa: E402
from services.models.importer import main, verify_checksum  # noqa: E402
from services.models.spec import ModelSpec  # noqa: E402


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    onnx_path, report, _ = lite0_files(settings)
    verify_checksum(onnx_path, report["onnx"]["sha256"])
    spec = ModelSpec(
        name="embedder",
        version=args.version,
        task="embedding",
        arch="efficientnet_lite0",
        stage=Stage(args.stage),
        input=lite0_input(report),
        output_name="embeddings",
        files={"fp32": onnx_path.name},
        licence=report["license"]["spdx"],
        source=f"{report['source']['package']}=={report['source']['version']} via timm {report['timm_model']}",
        extra={"dim": 1280, "normalised": "L2 inside the graph", "training_data": "ImageNet-1k"},
    )
    return spec, {"fp32": onnx_path}


if __name__ == "__main__":
    main(__doc__ or "", "v1", build)
