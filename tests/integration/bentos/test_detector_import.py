"""The detector import: the spec over the built files, with the INT8 metrics of the recipe it built.

The INT8 bytes depend on the CPU (calibration runs FP32 inference, whose last bits differ between
machines), so what must hold on every machine is the recipe (here) and the measured mAP within its
tolerance (tests/integration/test_detector_map.py serves the built file); the bytes are compared
with this machine's own rebuild (tests/integration/training/test_yolox_build.py).
"""

from __future__ import annotations

import argparse
import json

import pytest

from bentos.detector import import_model as detector
from services.config import get_settings
from services.models.specs import yolox
from services.models.store import sha256_file
from training.yolox_build import build_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_build_gives_an_fp32_and_int8_spec_with_measured_metrics() -> None:
    settings = get_settings()
    if not (settings.model_mirror_dir / yolox.SOURCE_FILE).is_file():
        pytest.skip("model mirror not available")
    spec, files = detector.build(argparse.Namespace(version="v9", stage="canary"), settings)
    assert spec.files == {"fp32": yolox.DYNAMIC_FILE, "int8": yolox.INT8_FILE}
    assert set(files) == {"fp32", "int8"} and all(f.is_file() for f in files.values())
    assert spec.version == "v9" and spec.stage.value == "canary" and len(spec.labels) == 80
    assert spec.metrics["coco_val2017_first128_map50_95"] == 0.339
    report = settings.artifacts_dir / yolox.QUANTIZATION_REPORT
    if not report.is_file():
        return
    assert spec.metrics["int8"]["coco_val2017_first128_map50_95"] >= 0.339 - 0.015
    chosen, built = json.loads(report.read_text())["chosen"], build_record(files)["int8"]
    assert yolox.recipe(built) == yolox.recipe(chosen)  # the measured recipe, on every machine
    assert built["output"]["sha256"] == sha256_file(files["int8"])  # the cached file is the one recorded
