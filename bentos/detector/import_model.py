"""Import the detector (YOLOX-Nano, COCO-80) from the mirror folder into the BentoML model store.

Usage: CV_MODEL_MIRROR_DIR=../shared/models python bentos/detector/import_model.py

The entry holds two files built from the checksum-verified mirror file at import time and cached
under ``<CV_DATA_DIR>/models/detector/<key>`` (:mod:`training.yolox_build`): the dynamic-batch FP32
file and its static QDQ INT8 version, calibrated with the recipe measured in
``artifacts/yolox_nano/quantization.json``. The spec and the INT8 metrics come from
:mod:`services.models.specs.yolox`, which refuses a report that measured another recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.config import ServingSettings, Stage
from services.models.importer import main
from services.models.spec import ModelSpec
from services.models.specs.yolox import FP32_METRICS, detector_spec, int8_metrics
from training.yolox_build import build_record, detector_files


def build(args: argparse.Namespace, settings: ServingSettings) -> tuple[ModelSpec, dict[str, Path]]:
    files = detector_files(
        model_mirror_dir=settings.model_mirror_dir,
        datasets_mirror_dir=settings.datasets_mirror_dir,
        data_dir=settings.data_dir,
    )
    metrics = {**FP32_METRICS, "int8": int8_metrics(settings.artifacts_dir, build_record(files)["int8"])}
    spec = detector_spec(
        version=args.version,
        stage=Stage(args.stage),
        files={precision: path.name for precision, path in files.items()},
        metrics=metrics,
    )
    return spec, files


if __name__ == "__main__":
    main(__doc__ or "", "v2", build)
