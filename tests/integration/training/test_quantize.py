"""INT8 static quantization of the real detector file (the model mirror and COCO128)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from training import quantize
from training.settings import get_training_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_cli_quantizes_the_dynamic_yolox_file_with_its_head_in_float(tmp_path: Path) -> None:
    from training.yolox_batch import make_batch_dynamic

    settings = get_training_settings()
    mirror = settings.model_mirror_dir / "yolox_nano.onnx"
    if not mirror.is_file() or not (settings.datasets_mirror_dir / "coco128" / "coco128.tar.gz").is_file():
        pytest.skip("model or COCO mirror not available")
    dynamic = tmp_path / "yolox_nano.dynamic.onnx"
    make_batch_dynamic(mirror, dynamic)
    out, report_path = tmp_path / "yolox_nano.int8.onnx", tmp_path / "report.json"
    argv = ["detector", "--onnx", str(dynamic), "--out", str(out), "--count", "2", "--per-channel"]
    assert quantize.main([*argv, "--exclude-head", "--exclude-upto", "Mul_43", "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {"Conv_380", "Conv_393", "Conv_394", "Concat_422", "Transpose_423"} <= set(report["excluded_nodes"])
    assert {"Conv_41", "Sigmoid_42", "Mul_43"} <= set(report["excluded_nodes"])
    assert "Conv_44" not in report["excluded_nodes"]
    assert report["calibration"]["pool"] == 128 and report["calibration"]["count"] == 2
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    output = session.run(None, {"images": np.full((2, 3, 416, 416), 114, np.float32)})[0]
    assert output.shape == (2, 3549, 85)
