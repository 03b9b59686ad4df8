"""The PyTorch side of the format benchmark (benchmarks/formats.py): one eager model per served model.

The classifier and embedder are timm's tf_efficientnet_lite0 (the fine-tuned state dict when given); there is no
PyTorch YOLOX here, so the detector's eager model is its ONNX graph converted by onnx2torch (formats.py checks it
against ONNX Runtime before timing it). Tests swap builders through ``formats.EAGER_BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class NotMeasured(Exception):
    """A format that cannot run here; the message says why and goes into the report."""


@dataclass
class ModelPlan:
    """What to measure for one model: its files, metrics and PyTorch source."""

    name: str
    fp32: Path
    int8: Path | None = None
    metrics: Path | None = None
    torch_state: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Eager:
    """A PyTorch module and how to read the output that the ONNX file's served output matches."""

    module: Any
    select: Callable[[Any], Any] = lambda out: out
    weights_bytes: int = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return np.asarray(self.select(self.module(torch.from_numpy(batch))).numpy())


def _weights_bytes(module: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))


def _lite0(plan: ModelPlan) -> Any:
    """timm tf_efficientnet_lite0: the fine-tuned state dict when given, else the network of the ONNX file itself.

    Without a state dict, the package's ImageNet weights for a 1000-class file (its source), or, for a fine-tune whose
    training run is not on this machine, its own weights read back from the file (``training.soup``: each folded
    BatchNorm becomes the conv and an identity BatchNorm; same network, same cost).
    """
    try:
        from training.lite0 import TIMM_MODEL_NAME, load_lite0
        from training.modules.lite0_net import build_classifier
        from training.soup import onnx_weights, state_dict_from_onnx
    except ImportError as exc:
        raise NotMeasured(f"the train extra is not installed ({exc.name})") from exc
    if plan.torch_state is None:
        weights = onnx_weights(plan.fp32)
        head = weights.get("model.classifier.weight")
        if head is None or head.shape[0] == 1000:
            return load_lite0()
        rebuilt = build_classifier(int(head.shape[0]))
        rebuilt.load_state_dict(state_dict_from_onnx(rebuilt, weights))
        plan.notes.append(f"PyTorch eager: the weights of `{plan.fp32.name}` read back into timm (training/soup.py).")
        return rebuilt.eval()
    import timm
    import torch

    state = torch.load(plan.torch_state, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if all(k.startswith("model.") for k in state):  # saved from a wrapper such as a LightningModule
        state = {k.removeprefix("model."): v for k, v in state.items()}
    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, num_classes=int(state["classifier.weight"].shape[0]))
    model.load_state_dict(state, strict=True)
    return model.eval()


def eager_classifier(plan: ModelPlan) -> Eager:
    model = _lite0(plan)
    return Eager(model, weights_bytes=_weights_bytes(model))


def eager_embedder(plan: ModelPlan) -> Eager:
    from training.export import Lite0WithEmbeddings

    model = Lite0WithEmbeddings(_lite0(plan)).eval()
    return Eager(model, select=lambda out: out[1], weights_bytes=_weights_bytes(model))


def eager_from_onnx(plan: ModelPlan) -> Eager:
    """No PyTorch YOLOX here: onnx2torch turns the ONNX graph into a torch module (checked against ORT later)."""
    try:
        import onnx
        from onnx2torch import convert
    except ImportError as exc:
        raise NotMeasured(f"no PyTorch source: onnx2torch is not installed ({exc.name})") from exc
    try:
        module = convert(onnx.load(str(plan.fp32))).eval()
    except Exception as exc:  # an unsupported operator or opset: report it, do not stop the benchmark
        raise NotMeasured(f"onnx2torch cannot convert {plan.fp32.name}: {type(exc).__name__}: {exc}") from exc
    return Eager(
        module,
        select=lambda out: out[0] if isinstance(out, list | tuple) else out,
        weights_bytes=_weights_bytes(module),
    )


EAGER_BUILDERS: dict[str, Callable[[ModelPlan], Eager]] = {
    "classifier": eager_classifier,
    "detector": eager_from_onnx,
    "embedder": eager_embedder,
}
