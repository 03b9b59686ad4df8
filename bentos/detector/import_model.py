"""Import the detector (YOLOX-Nano, COCO-80) from the mirror folder into the BentoML model store.

Usage: CV_MODEL_MIRROR_DIR=../shared/models python bentos/detector/import_model.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main, verify_checksum
from services.models.spec import InputSpec, Letterbox, ModelSpec

FILE_NAME = "yolox_nano.onnx"
# Published with the mirror (SHA256SUMS); an official YOLOX release export.
SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
LABELS = Path(__file__).with_name("coco80.txt")


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    onnx_path = settings.model_mirror_dir / FILE_NAME
    verify_checksum(onnx_path, SHA256)
    spec = ModelSpec(
        name="detector",
        version=args.version,
        task="detection",
        arch="yolox",
        stage=Stage(args.stage),
        input=InputSpec(
            name="images",
            height=416,
            width=416,
            color_order="BGR",
            interpolation="cv2_linear",
            resize="letterbox",
            letterbox=Letterbox(pad_value=114, align="top-left"),
        ),
        output_name="output",
        labels=LABELS.read_text().splitlines(),
        files={"fp32": FILE_NAME},
        licence="Apache-2.0 (Megvii YOLOX)",
        source="YOLOX-Nano COCO weights, ONNX export (opset 11), mirror folder",
        metrics={
            "coco_val2017_first128_map50_95": 0.339,
            "coco_val2017_first128_map50": 0.497,
            "published_coco_val2017_map50_95": 0.258,
        },
        extra={"strides": [8, 16, 32], "training_data": "COCO train2017"},
    )
    return spec, {"fp32": onnx_path}


if __name__ == "__main__":
    main(__doc__ or "", "v1", build)
