"""The detector's spec: YOLOX-Nano (COCO-80) from the mirror folder, 416x416, FP32 and INT8.

The store entry holds two files that ``training/yolox_build.py`` builds from the checksum-verified
mirror file at import time: the mirror file with a symbolic batch axis (FP32) and its static QDQ
INT8 version. Their INT8 metrics come from ``artifacts/yolox_nano/quantization.json``, the study
that chose the recipe; they are taken only for a build of that recipe.

Calibration runs FP32 inference, whose last bits differ between CPUs, so the INT8 bytes built
here may differ from those the study measured (the ``sha256`` in the report is the measuring
machine's build): the recipe must match, the bytes need not. On one machine a rebuild gives the
same bytes as its cached build.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from services.config import Stage
from services.models.spec import InputSpec, Letterbox, ModelSpec

log = logging.getLogger(__name__)

SOURCE_FILE = "yolox_nano.onnx"  # in the model mirror folder (CV_MODEL_MIRROR_DIR)
# Published with the mirror (SHA256SUMS); an official YOLOX release export.
SOURCE_SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
DYNAMIC_FILE = "yolox_nano.dynamic.onnx"
INT8_FILE = "yolox_nano.int8.onnx"
LABELS_FILE = Path(__file__).with_name("coco80.txt")  # the 80 COCO classes in the standard order
ARTIFACTS = "yolox_nano"  # under the artifacts folder: metrics.json, quantization.json
QUANTIZATION_REPORT = Path(ARTIFACTS) / "quantization.json"
FP32_METRICS = {
    "coco_val2017_first128_map50_95": 0.339,
    "coco_val2017_first128_map50": 0.497,
    "published_coco_val2017_map50_95": 0.258,
}
# Recorded with a recipe but not part of it: the library that ran the calibration.
_NOT_RECIPE = ("onnxruntime",)


# The letterbox pads to whole multiples of the network's largest stride, one of them past the image, not to 416 x 416:
# the import makes the files' height and width symbolic (training/yolox_batch.py), and a 4:3 photo runs 416 x 352,
# 0.85x the compute (services/models/spec.py, Letterbox.stride).
LETTERBOX_STRIDE = 32


def detector_input(stride: int = LETTERBOX_STRIDE) -> InputSpec:
    """YOLOX preprocessing (../shared/models/README.md): BGR 0-255, cv2 bilinear, top-left letterbox of 114, on a canvas
    of whole ``stride`` multiples (0: the whole 416 x 416, as the mirror file's fixed input needs)."""
    return InputSpec(
        name="images",
        height=416,
        width=416,
        color_order="BGR",
        interpolation="cv2_linear",
        resize="letterbox",
        letterbox=Letterbox(pad_value=114, align="top-left", stride=stride),
    )


def detector_labels() -> list[str]:
    """The 80 COCO class names, in class-id order."""
    return LABELS_FILE.read_text().splitlines()


def detector_spec(
    *,
    version: str,
    files: dict[str, str],
    metrics: dict[str, Any],
    stage: Stage = Stage.PRODUCTION,
    stride: int = LETTERBOX_STRIDE,
) -> ModelSpec:
    """The detector's spec over ``files`` (precision -> file name); ``stride``: :func:`detector_input`'s."""
    return ModelSpec(
        name="detector",
        version=version,
        task="detection",
        arch="yolox",
        stage=stage,
        input=detector_input(stride),
        output_name="output",
        labels=detector_labels(),
        files=files,
        licence="Apache-2.0 (Megvii YOLOX)",
        source="YOLOX-Nano COCO weights, ONNX export (opset 11), mirror folder; batch, height and width made symbolic",
        metrics=metrics,
        extra={"strides": [8, 16, 32], "training_data": "COCO train2017"},
    )


def recipe(quantized: dict[str, Any]) -> dict[str, Any]:
    """What decides an INT8 file besides the source and the CPU: the settings and the calibration images.

    Args:
        quantized: A ``training.quantize.quantize_model`` report, or a quantization study's variant row.
    """
    settings = {k: v for k, v in quantized["settings"].items() if k not in _NOT_RECIPE}
    return {"settings": settings, "calibration_images": quantized["calibration"]["images"]}


def int8_metrics(artifacts_dir: Path, built: dict[str, Any]) -> dict[str, Any]:
    """The measured metrics of the INT8 file ``built`` describes, from the quantization report; ``{}`` if none.

    The report must have measured the recipe that was built (settings, calibration images). Its
    ``sha256`` need not be the built file's: another CPU calibrates to other last bits (logged).

    Args:
        artifacts_dir: The folder holding ``yolox_nano/quantization.json``.
        built: The ``int8`` part of the build's record (``training.quantize.quantize_model``'s report).

    Raises:
        ValueError: the report measured another recipe than the one built (re-run the measurement).
    """
    path = artifacts_dir / QUANTIZATION_REPORT
    if not path.is_file():
        log.warning("no quantization report; INT8 metrics left out", extra={"path": str(path)})
        return {}
    chosen = json.loads(path.read_text())["chosen"]
    ours, theirs = recipe(built), recipe(chosen)
    if ours != theirs:
        differs = sorted(k for k in ours["settings"].keys() | theirs["settings"].keys()
                         if ours["settings"].get(k) != theirs["settings"].get(k))  # fmt: skip
        what = f"settings {differs}" if differs else "calibration images"
        raise ValueError(f"{path} measured another INT8 recipe than the one built ({what}); re-run the measurement")
    if built["output"]["sha256"] != chosen["sha256"]:
        log.warning(
            "the INT8 detector built here differs in its last bits from the measured one (same recipe; calibration "
            "rounds differently on this CPU); its metrics are the measured file's",
            extra={"built": built["output"]["sha256"], "measured": chosen["sha256"]},
        )
    return {
        "coco_val2017_first128_map50_95": chosen["map50_95"],
        "coco_val2017_first128_map50": chosen["map50"],
        "delta_map50_95_vs_fp32": chosen["delta_map50_95"],
        "calibration": f"{chosen['calibration_images']} COCO128 train2017 images",
        "recipe": chosen["name"],
    }
