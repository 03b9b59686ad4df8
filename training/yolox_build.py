"""The served detector files, built from the mirror's YOLOX-Nano file and cached.

Two files are built from the checksum-verified mirror file and cached under
``<data_dir>/models/detector/<key>`` (key: source checksum, recipe, build revision, library
versions), so a repeated import copies the same bytes and the model store sees the same checksums:

- ``fp32``: ``yolox_nano.dynamic.onnx``, the mirror file with a symbolic batch axis and a symbolic image size
  (:mod:`training.yolox_batch`), checked against per-image runs of the original (at its 416 x 416);
- ``int8``: ``yolox_nano.int8.onnx``, static QDQ INT8 (:mod:`training.quantize`) calibrated on
  COCO128 train2017 with the recipe of :func:`int8_config`, the best variant measured in
  ``artifacts/yolox_nano/quantization.json``.

``build.json`` beside them records the build (the INT8 file's recipe, calibration images and
checksum). A rebuild on one machine gives the same bytes; on another CPU the INT8 bytes may
differ in their last bits (calibration runs FP32 inference), never the recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from services.models.importer import verify_checksum
from services.models.preprocessing import prepare
from services.models.specs.yolox import DYNAMIC_FILE, INT8_FILE, SOURCE_FILE, SOURCE_SHA256, detector_input
from training.data.coco import image_paths, locate_coco128
from training.quantize import QuantizeConfig, choose_calibration_images, quantize_model
from training.serving import read_rgb
from training.yolox_batch import batch_parity, make_batch_dynamic, make_size_dynamic

log = logging.getLogger(__name__)

BUILD_RECORD = "build.json"
# Bump when the build steps change in a way the recipe does not show. 2: the image size made symbolic too.
BUILD_REVISION = 2
# The largest batch-vs-single difference accepted for the dynamic file (they agree exactly on CPU).
BATCH_PARITY_TOLERANCE = 1e-4


def int8_config() -> QuantizeConfig:
    """The INT8 recipe: the best of the variants in ``artifacts/yolox_nano/quantization.json``.

    Per-channel weights and 99.999th-percentile activation ranges; the stem and the first CSP
    stage (``dark2``, up to node ``Mul_69``: narrow layers at 208x208 whose error reaches every
    later layer) stay float. Quantizing them costs 0.26 mAP; with them in float, keeping the head
    in float too did not help (0.330 against 0.335).
    """
    return QuantizeConfig(method="percentile", per_channel=True, count=128, seed=0, exclude_upto="Mul_69")


def cache_key(config: QuantizeConfig) -> str:
    """What decides the built files: source checksum, recipe, build revision and library versions."""
    import onnx

    recipe = {"source": SOURCE_SHA256, "int8": config.settings(), "onnx": onnx.__version__, "revision": BUILD_REVISION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def build_folder(data_dir: Path, config: QuantizeConfig) -> Path:
    """Where the files of ``config`` are cached under ``data_dir``."""
    return data_dir / "models" / "detector" / cache_key(config)


def _build(source: Path, folder: Path, calibration: list[Path], config: QuantizeConfig) -> None:
    """Build both files into ``folder`` (written elsewhere first, then renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        dynamic = make_batch_dynamic(source, work / DYNAMIC_FILE)
        make_size_dynamic(work / DYNAMIC_FILE, {"output": {1: "anchors"}})
        whole = detector_input(stride=0)  # the mirror file's fixed 416 x 416, for the parity and the calibration
        picked = choose_calibration_images(calibration, 4, 1)
        batch = np.stack([prepare(read_rgb(p), whole).tensor for p in picked])
        parity = batch_parity(source, work / DYNAMIC_FILE, batch)
        if parity > BATCH_PARITY_TOLERANCE:
            raise ValueError(f"dynamic-batch file differs from per-image runs by {parity}")
        report = quantize_model(work / DYNAMIC_FILE, work / INT8_FILE, whole, calibration, config)
        build = {"dynamic": dynamic, "batch_parity_max_abs": parity, "int8": report}
        (work / BUILD_RECORD).write_text(json.dumps(build, indent=2) + "\n")
        if not folder.exists():  # else another import finished first, with the same files
            work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def detector_files(
    *, model_mirror_dir: Path, datasets_mirror_dir: Path, data_dir: Path, config: QuantizeConfig | None = None
) -> dict[str, Path]:
    """The FP32 (dynamic batch) and INT8 files, built from the mirror file on first use.

    Args:
        model_mirror_dir: The folder holding ``yolox_nano.onnx``.
        datasets_mirror_dir: The folder holding ``coco128/`` (calibration images), used when
            COCO128 is not unpacked under ``data_dir`` yet.
        data_dir: Where the files are cached (``models/detector/<key>``) and COCO128 is unpacked.
        config: The INT8 recipe; :func:`int8_config` by default.

    Returns:
        ``{"fp32": path, "int8": path}``.

    Raises:
        FileNotFoundError, ValueError: the mirror file is missing or its checksum is wrong.
    """
    config = config or int8_config()
    source = model_mirror_dir / SOURCE_FILE
    verify_checksum(source, SOURCE_SHA256)
    folder = build_folder(data_dir, config)
    files = {"fp32": folder / DYNAMIC_FILE, "int8": folder / INT8_FILE}
    if not all(path.is_file() for path in files.values()):
        log.info("building the detector files", extra={"folder": str(folder)})
        if folder.exists():
            shutil.rmtree(folder)  # a partial folder from an interrupted build
        calibration = image_paths(locate_coco128(data_dir, datasets_mirror_dir), "train2017")
        _build(source, folder, calibration, config)
    return files


def build_record(files: dict[str, Path]) -> dict[str, Any]:
    """The record of the build that made ``files`` (:func:`detector_files`' answer)."""
    record: dict[str, Any] = json.loads((files["int8"].parent / BUILD_RECORD).read_text())
    return record
