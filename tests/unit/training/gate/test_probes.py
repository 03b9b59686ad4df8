"""Interleaved batch-1 latency over fake models; where a PyTorch source is found, and why not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.models.classification import ClassifyParams
from services.models.spec import InputSpec, ModelSpec
from training.gate.probes import interleaved_latency, parity, torch_source


class _Recorder:
    """A stand-in for a model: records the order of the calls."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def infer(self, images: list[np.ndarray], params: list[Any]) -> list[Any]:
        assert len(images) == len(params) == 1
        self.calls.append(self.name)
        return []


def test_latency_interleaves_the_models_and_rotates_their_order() -> None:
    calls: list[str] = []
    models = {k: _Recorder(k, calls) for k in ("a", "b", "c")}
    images = [np.zeros((2, 2, 3), dtype=np.uint8)]
    stats = interleaved_latency(models, images, ClassifyParams(), iterations=4, warmup=2)  # type: ignore[arg-type]
    assert calls[:9] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert len(calls) == 18 and set(stats) == {"a", "b", "c"}
    assert all(0 <= s["p50_ms"] <= s["p95_ms"] for s in stats.values()) and "throughput" not in stats["a"]


def _spec(arch: str, training_data: str = "Tiny-ImageNet-200") -> ModelSpec:
    return ModelSpec(
        name="classifier",
        version="v9",
        task="classification",
        arch=arch,
        input=InputSpec(height=224, width=224),
        output_name="logits",
        files={"fp32": "model.onnx"},
        extra={"training_data": training_data},
    )


def test_no_pytorch_source_for_yolox_or_a_fine_tune_without_its_weights(tmp_path: Path) -> None:
    assert "no PyTorch model of yolox" in str(torch_source(_spec("yolox"), None))
    assert "no --torch-state" in str(torch_source(_spec("efficientnet_lite0"), None))
    assert "not on this machine" in str(torch_source(_spec("efficientnet_lite0"), tmp_path / "model.pt"))
    result = parity(object(), _spec("yolox"), [])  # type: ignore[arg-type]
    assert result.max_abs_diff is None and "yolox" in result.source


def test_a_fine_tunes_state_dict_is_its_pytorch_source(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from training.modules.lite0_net import build_classifier

    path = tmp_path / "model.pt"
    torch.save(build_classifier(5).state_dict(), path)
    found = torch_source(_spec("efficientnet_lite0"), path)
    assert not isinstance(found, str)
    module, source = found
    with torch.inference_mode():
        logits, embeddings = module(torch.zeros(1, 3, 224, 224))
    assert source == f"state dict {path}" and logits.shape == (1, 5) and embeddings.shape == (1, 1280)
