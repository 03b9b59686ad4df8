"""The checks every exported Lite0 file passes before it is written down: the graph's signature (``onnx.checker``,
input and output names and shapes), onnxsim where it removes nodes, and ONNX Runtime against PyTorch on real and
random input. ``python -m training.export`` (the ImageNet-1k file) and ``python -m training.release`` (a fine-tune)
both run them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import lite0
from training.lite0 import CheckError

LOG = logging.getLogger("training.onnx_checks")

PARITY_TOLERANCE = 1e-3


def check_onnx(path: Path, num_classes: int = lite0.NUM_CLASSES, input_size: int = lite0.INPUT_SIZE) -> dict[str, Any]:
    """Runs ``onnx.checker`` and verifies the graph's input/output names and shapes."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)

    def dims(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    io_shapes = {v.name: dims(v) for v in [*model.graph.input, *model.graph.output]}
    expected = {"images": [3, input_size, input_size], "logits": [num_classes], "embeddings": [lite0.EMBEDDING_DIM]}
    for name, tail in expected.items():
        shape = io_shapes.get(name)
        if shape is None or shape[1:] != tail or not isinstance(shape[0], str):
            raise CheckError(f"{name}: expected [batch, *{tail}], got {shape}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"io": io_shapes, "opset": opset, "nodes": len(model.graph.node)}


def ort_session(path: Path) -> Any:
    """Opens an ONNX Runtime CPU session."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def parity(wrapper: nn.Module, path: Path, images: np.ndarray) -> dict[str, Any]:
    """Max abs diff ONNX Runtime vs PyTorch for batch 1, batch 8 (real) and random input.

    Raises:
        CheckError: When any diff exceeds 1e-3 or embeddings are not unit-norm.
    """
    session = ort_session(path)
    rng = np.random.default_rng(0)
    cases = {
        "batch1_real": images[:1],
        "batch8_real": images[:8],
        "batch2_random": rng.standard_normal((2, *images.shape[1:])).astype(np.float32),
    }
    result: dict[str, Any] = {"tolerance": PARITY_TOLERANCE}
    for case, batch in cases.items():
        with torch.no_grad():
            torch_out = [t.numpy() for t in wrapper(torch.from_numpy(batch))]
        onnx_out = session.run(["logits", "embeddings"], {"images": batch})
        norms = np.linalg.norm(onnx_out[1], axis=1)
        result[case] = {
            "batch": len(batch),
            "logits": float(np.abs(onnx_out[0] - torch_out[0]).max()),
            "embeddings": float(np.abs(onnx_out[1] - torch_out[1]).max()),
            "embedding_norm_max_dev": float(np.abs(norms - 1.0).max()),
        }
        LOG.info("parity %s: %s", case, result[case])
    worst = max(
        max(v["logits"], v["embeddings"], v["embedding_norm_max_dev"]) for k, v in result.items() if k != "tolerance"
    )
    if worst > PARITY_TOLERANCE:
        raise CheckError(f"ONNX Runtime vs PyTorch parity failed: {result}")
    return result


def simplify(path: Path) -> dict[str, Any]:
    """Run onnxsim; keep its graph only when it has fewer nodes."""
    import onnx

    before = len(onnx.load(str(path)).graph.node)
    try:
        import onnxsim
    except ImportError:
        return {"tool": None, "nodes_before": before, "kept": False, "reason": "onnxsim is not installed"}
    simplified, ok = onnxsim.simplify(onnx.load(str(path)))
    after = len(simplified.graph.node)
    kept = bool(ok) and after < before
    if kept:
        onnx.save(simplified, str(path))
    return {"tool": f"onnxsim {onnxsim.__version__}", "nodes_before": before, "nodes_after": after, "kept": kept}
