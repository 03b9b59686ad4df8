"""OrtRunner over a tiny ONNX graph built in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.models.runtime import OrtRunner, available_providers


def runner(path: Path, *, input_name: str = "images", output_name: str = "out") -> OrtRunner:
    return OrtRunner(
        path, input_name=input_name, output_name=output_name, providers=["CPUExecutionProvider"], threads=1
    )


def test_available_providers_skips_missing_and_ends_with_cpu() -> None:
    chosen = available_providers(["NoSuchExecutionProvider", "CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]


def test_ort_runner_runs_a_batch(tiny_onnx: Path) -> None:
    ort_runner = runner(tiny_onnx)
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(2)])
    np.testing.assert_allclose(ort_runner(batch), [[0, 0, 0], [1, 1, 1]])
    assert ort_runner.providers == ["CPUExecutionProvider"]
    assert ort_runner.path == tiny_onnx


@pytest.mark.parametrize(
    ("input_name", "output_name", "missing"), [("pixels", "out", "input"), ("images", "x", "output")]
)
def test_ort_runner_rejects_wrong_tensor_names(
    tiny_onnx: Path, input_name: str, output_name: str, missing: str
) -> None:
    with pytest.raises(ValueError, match=f"has no {missing}"):
        runner(tiny_onnx, input_name=input_name, output_name=output_name)


def test_ort_runner_dynamic_batch_runs_in_one_call(tiny_onnx: Path) -> None:
    assert runner(tiny_onnx).fixed_batch is None


def test_ort_runner_fixed_batch_of_one_runs_image_by_image(tiny_onnx_batch1: Path) -> None:
    ort_runner = runner(tiny_onnx_batch1)
    assert ort_runner.fixed_batch == 1
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(3)])
    np.testing.assert_allclose(ort_runner(batch), [[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    np.testing.assert_allclose(ort_runner(batch[:1]), [[0, 0, 0]])
