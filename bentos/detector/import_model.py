"""Import the detector (YOLOX-Nano, COCO-80) from the mirror folder into the BentoML model store.

Usage: CV_MODEL_MIRROR_DIR=../shared/models python bentos/detector/import_model.py

The entry holds two files built from the checksum-verified mirror file at import time and
cached under ``<CV_DATA_DIR>/models/detector/<key>`` (key: source checksum, recipe, library
versions), so a repeated import copies the same bytes and the store sees the same checksums:

- ``fp32``: ``yolox_nano.dynamic.onnx``, the mirror file with a symbolic batch axis
  (:mod:`training.yolox_batch`), checked against per-image runs of the original;
- ``int8``: ``yolox_nano.int8.onnx``, static QDQ INT8 (:mod:`training.quantize`) calibrated on
  COCO128 train2017 with the recipe of :func:`int8_config`, the best variant measured in
  ``artifacts/yolox_nano/quantization.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main, verify_checksum
from services.models.spec import InputSpec, Letterbox, ModelSpec

if TYPE_CHECKING:
    from training.quantize import QuantizeConfig

log = logging.getLogger(__name__)

FILE_NAME = "yolox_nano.onnx"
# Published with the mirror (SHA256SUMS); an official YOLOX release export.
SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
LABELS = Path(__file__).with_name("coco80.txt")
DYNAMIC_NAME = "yolox_nano.dynamic.onnx"
INT8_NAME = "yolox_nano.int8.onnx"
QUANTIZATION_REPORT = Path("yolox_nano") / "quantization.json"  # under settings.artifacts_dir
# Bump when the build steps change in a way the recipe does not show.
BUILD_REVISION = 1
# The largest batch-vs-single difference accepted for the dynamic file (they agree exactly on CPU).
BATCH_PARITY_TOLERANCE = 1e-4
FP32_METRICS = {
    "coco_val2017_first128_map50_95": 0.339,
    "coco_val2017_first128_map50": 0.497,
    "published_coco_val2017_map50_95": 0.258,
}


def int8_config() -> QuantizeConfig:
    """The INT8 recipe: the best of the variants in ``artifacts/yolox_nano/quantization.json``.

    Per-channel weights and 99.999th-percentile activation ranges; the stem and the first CSP
    stage (``dark2``, up to node ``Mul_69``: narrow layers at 208x208 whose error reaches every
    later layer) stay float. Quantizing them costs 0.26 mAP; with them in float, keeping the head
    in float too did not help (0.330 against 0.335).
    """
    from training.quantize import QuantizeConfig

    return QuantizeConfig(method="percentile", per_channel=True, count=128, seed=0, exclude_upto="Mul_69")


def detector_input() -> InputSpec:
    """YOLOX preprocessing (../shared/models/README.md): BGR 0-255, cv2 bilinear, top-left letterbox of 114."""
    return InputSpec(
        name="images",
        height=416,
        width=416,
        color_order="BGR",
        interpolation="cv2_linear",
        resize="letterbox",
        letterbox=Letterbox(pad_value=114, align="top-left"),
    )


def detector_spec(*, version: str, stage: Stage, files: dict[str, str], metrics: dict[str, Any]) -> ModelSpec:
    """The detector's spec over ``files`` (precision -> file name)."""
    return ModelSpec(
        name="detector",
        version=version,
        task="detection",
        arch="yolox",
        stage=stage,
        input=detector_input(),
        output_name="output",
        labels=LABELS.read_text().splitlines(),
        files=files,
        licence="Apache-2.0 (Megvii YOLOX)",
        source="YOLOX-Nano COCO weights, ONNX export (opset 11), mirror folder; batch axis made dynamic",
        metrics=metrics,
        extra={"strides": [8, 16, 32], "training_data": "COCO train2017"},
    )


def cache_key(config: QuantizeConfig) -> str:
    """What decides the built files: source checksum, recipe, build revision and library versions."""
    import onnx

    recipe = {"source": SHA256, "int8": config.settings(), "onnx": onnx.__version__, "revision": BUILD_REVISION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _build(source: Path, folder: Path, settings: ServingSettings, config: QuantizeConfig) -> None:
    """Build both files into ``folder`` (written elsewhere first, then renamed into place)."""
    import numpy as np

    from services.models.preprocessing import prepare
    from training.data.coco import image_paths, locate_coco128
    from training.quantize import choose_calibration_images, quantize_model
    from training.serving import read_rgb
    from training.yolox_batch import batch_parity, make_batch_dynamic

    pool = image_paths(locate_coco128(settings), "train2017")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        dynamic = make_batch_dynamic(source, work / DYNAMIC_NAME)
        batch = np.stack([prepare(read_rgb(p), detector_input()).tensor for p in choose_calibration_images(pool, 4, 1)])
        parity = batch_parity(source, work / DYNAMIC_NAME, batch)
        if parity > BATCH_PARITY_TOLERANCE:
            raise ValueError(f"dynamic-batch file differs from per-image runs by {parity}")
        report = quantize_model(work / DYNAMIC_NAME, work / INT8_NAME, detector_input(), pool, config)
        build = {"dynamic": dynamic, "batch_parity_max_abs": parity, "int8": report}
        (work / "build.json").write_text(json.dumps(build, indent=2) + "\n")
        if not folder.exists():  # else another import finished first, with the same files
            work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def detector_files(settings: ServingSettings, config: QuantizeConfig | None = None) -> dict[str, Path]:
    """The FP32 (dynamic batch) and INT8 files, built from the mirror file on first use.

    Raises:
        FileNotFoundError, ValueError: the mirror file is missing or its checksum is wrong.
    """
    config = config or int8_config()
    source = settings.model_mirror_dir / FILE_NAME
    verify_checksum(source, SHA256)
    folder = settings.data_dir / "models" / "detector" / cache_key(config)
    files = {"fp32": folder / DYNAMIC_NAME, "int8": folder / INT8_NAME}
    if not all(path.is_file() for path in files.values()):
        log.info("building the detector files", extra={"folder": str(folder)})
        if folder.exists():
            shutil.rmtree(folder)  # a partial folder from an interrupted build
        _build(source, folder, settings, config)
    return files


def int8_metrics(settings: ServingSettings, config: QuantizeConfig) -> dict[str, Any]:
    """The measured INT8 metrics of ``config`` from the quantization report; ``{}`` if it has none.

    Raises:
        ValueError: the report's chosen recipe is not ``config`` (re-measure after changing it).
    """
    path = settings.artifacts_dir / QUANTIZATION_REPORT
    if not path.is_file():
        log.warning("no quantization report; INT8 metrics left out", extra={"path": str(path)})
        return {}
    chosen = json.loads(path.read_text())["chosen"]
    ours = {k: v for k, v in config.settings().items() if k != "onnxruntime"}
    theirs = {k: v for k, v in chosen["settings"].items() if k != "onnxruntime"}
    if ours != theirs:
        raise ValueError(f"{path} measured another INT8 recipe than the one imported; re-run the measurement")
    return {
        "coco_val2017_first128_map50_95": chosen["map50_95"],
        "coco_val2017_first128_map50": chosen["map50"],
        "delta_map50_95_vs_fp32": chosen["delta_map50_95"],
        "calibration": f"{chosen['calibration_images']} COCO128 train2017 images",
        "recipe": chosen["name"],
    }


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    config = int8_config()
    files = detector_files(settings, config)
    metrics = {**FP32_METRICS, "int8": int8_metrics(settings, config)}
    spec = detector_spec(
        version=args.version,
        stage=Stage(args.stage),
        files={precision: path.name for precision, path in files.items()},
        metrics=metrics,
    )
    return spec, files


if __name__ == "__main__":
    main(__doc__ or "", "v1", build)
