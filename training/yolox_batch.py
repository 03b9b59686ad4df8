"""Make the batch axis of a batch-1 ONNX export (the YOLOX-Nano mirror file) symbolic, and its image size.

The mirror file fixes ``images`` at ``[1, 3, 416, 416]`` and ``output`` at ``[1, 3549, 85]``,
and its three head ``Reshape`` nodes carry the constant shape ``[1, 85, -1]``. Rewriting
those dims to a named one and the leading ``1`` of each Reshape shape to ``0`` ("copy the
input's dim", ONNX Reshape semantics without ``allowzero``) lets one ONNX Runtime call run a
whole batch. Stale ``value_info`` is dropped and shape inference rerun; ``onnx.checker``
must accept the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_DIM = "batch"
SIZE_DIMS = ("height", "width")


def _name_axis(value: onnx.ValueInfoProto, axis: int, name: str) -> None:
    """Make ``axis`` of ``value``'s shape the symbolic ``name``."""
    dims = value.type.tensor_type.shape.dim
    if not dims:
        raise ValueError(f"{value.name} has no shape")
    if axis >= len(dims):
        raise ValueError(f"{value.name} has no axis {axis}")
    dims[axis].Clear()
    dims[axis].dim_param = name


def _data_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The graph's inputs that are fed at run time (not initializers listed as inputs)."""
    initializers = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def _checked_save(model: onnx.ModelProto, dst: Path) -> onnx.ModelProto:
    """Drop the recorded intermediate shapes, infer them again (strict), check the model and write it to ``dst``."""
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return model


def _constant_arrays(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    tensors = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors[node.output[0]] = attribute.t
    return tensors


def _free_reshape_batch(graph: onnx.GraphProto) -> int:
    """Turn a leading ``1`` in every constant Reshape shape into ``0``; returns how many changed."""
    tensors = _constant_arrays(graph)
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in tensors:
            continue
        shape = numpy_helper.to_array(tensors[node.input[1]]).copy()
        if shape.ndim != 1 or shape.size == 0 or shape[0] != 1:
            continue
        if uses[node.input[1]] > 1:
            raise ValueError(f"Reshape shape {node.input[1]} is shared by other nodes; refusing to rewrite it")
        shape[0] = 0
        tensors[node.input[1]].CopyFrom(numpy_helper.from_array(shape.astype(np.int64), node.input[1]))
        changed += 1
    return changed


def make_batch_dynamic(src: Path, dst: Path, *, dim_name: str = BATCH_DIM) -> dict[str, object]:
    """Write ``dst``: ``src`` with a symbolic batch axis on every input and output.

    Args:
        src: A batch-1 ONNX file.
        dst: Where to write the rewritten model.
        dim_name: The symbolic name of the batch axis.

    Returns:
        What was rewritten: input and output names and the number of Reshape shapes changed.

    Raises:
        ValueError: an input or output has no shape, or a Reshape shape constant is shared.
    """
    model = onnx.load(str(src))
    inputs = _data_inputs(model.graph)
    for value in [*inputs, *model.graph.output]:
        _name_axis(value, 0, dim_name)
    reshapes = _free_reshape_batch(model.graph)
    model = _checked_save(model, dst)  # the intermediate shapes were recorded with batch 1
    return {
        "inputs": [value.name for value in inputs],
        "outputs": [value.name for value in model.graph.output],
        "reshapes_rewritten": reshapes,
        "dim": dim_name,
    }


def make_size_dynamic(path: Path, outputs: dict[str, dict[int, str]], names: tuple[str, str] = SIZE_DIMS) -> None:
    """Rewrite ``path`` in place: its image input's height and width (the last two axes of its N x C x H x W input)
    symbolic, and the output axes that follow the size (``outputs``: output name -> {axis: symbolic name}).

    For a network whose every layer takes any size that is a multiple of its largest stride (YOLOX-Nano: convolutions,
    a Resize by scales, Reshapes to ``[0, 85, -1]``), so serving can letterbox a photo to the smallest such canvas
    (``services.models.spec.Letterbox.stride``). Shape inference is rerun and ``onnx.checker`` must accept the result;
    a graph that pins the size somewhere (a constant shape, a fixed Resize size) fails there, or at its first run
    of another size (tests/integration/training/test_yolox_batch.py runs the real file at 416 x 320).

    Raises:
        ValueError: the input is not 4-D, or an output or axis named in ``outputs`` does not exist.
    """
    model = onnx.load(str(path))
    (image,) = _data_inputs(model.graph)
    if len(image.type.tensor_type.shape.dim) != 4:
        raise ValueError(f"{image.name} is not an N x C x H x W input: {len(image.type.tensor_type.shape.dim)} axes")
    for axis, name in zip((2, 3), names, strict=True):
        _name_axis(image, axis, name)
    by_name = {value.name: value for value in model.graph.output}
    for output, axes in outputs.items():
        if output not in by_name:
            raise ValueError(f"no output named {output}")
        for axis, name in axes.items():
            _name_axis(by_name[output], axis, name)
    _checked_save(model, path)


def batch_parity(single: Path, batched: Path, batch: np.ndarray) -> float:
    """Max abs difference between one call of ``batched`` over ``batch`` and per-image calls of ``single``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    one = ort.InferenceSession(str(single), sess_options=options, providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(str(batched), sess_options=options, providers=["CPUExecutionProvider"])
    name = one.get_inputs()[0].name
    together = np.asarray(many.run(None, {name: batch})[0])
    alone = np.concatenate([np.asarray(one.run(None, {name: batch[i : i + 1]})[0]) for i in range(len(batch))])
    if together.shape != alone.shape:
        raise ValueError(f"batched output {together.shape} differs in shape from per-image outputs {alone.shape}")
    return float(np.abs(together - alone).max())
