"""A symbolic batch axis for batch-1 ONNX files, on small built graphs (the real YOLOX-Nano file: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.yolox_batch import batch_parity, make_batch_dynamic, make_size_dynamic


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def reshape_model(path: Path, *, shared: bool = False, constant_node: bool = False) -> Path:
    """x [1, 2, 3] -> Relu -> Reshape [1, -1] -> y [1, 6] (optionally a second Reshape sharing the shape)."""
    shape = numpy_helper.from_array(np.asarray([1, -1], np.int64), "shape")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    inits = []
    if constant_node:
        nodes.append(helper.make_node("Constant", [], ["shape"], name="const", value=shape))
    else:
        inits.append(shape)
    nodes.append(helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape"))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])]
    if shared:
        nodes.append(helper.make_node("Reshape", ["x", "shape"], ["z"], name="reshape2"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 6]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])], outputs, inits
    )
    graph.value_info.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 2, 3]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("constant_node", [False, True], ids=["initializer", "constant-node"])
def test_batch_axis_and_reshape_become_symbolic(tmp_path: Path, constant_node: bool) -> None:
    src = reshape_model(tmp_path / "one.onnx", constant_node=constant_node)
    info = make_batch_dynamic(src, tmp_path / "many.onnx")
    assert info == {"inputs": ["x"], "outputs": ["y"], "reshapes_rewritten": 1, "dim": "batch"}
    model = onnx.load(str(tmp_path / "many.onnx"))
    assert _dims(model.graph.input[0]) == ["batch", 2, 3]
    assert _dims(model.graph.output[0]) == ["batch", 6]
    inferred = {v.name: _dims(v) for v in model.graph.value_info}
    assert inferred["r"] == ["batch", 2, 3]  # the stale [1, 2, 3] was re-inferred
    batch = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)
    assert batch_parity(src, tmp_path / "many.onnx", batch) == 0.0


def test_a_shared_reshape_shape_is_refused(tmp_path: Path) -> None:
    src = reshape_model(tmp_path / "one.onnx", shared=True)
    with pytest.raises(ValueError, match="shared"):
        make_batch_dynamic(src, tmp_path / "many.onnx")


def test_an_input_without_a_shape_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "one.onnx"))
    with pytest.raises(ValueError, match="no shape"):
        make_batch_dynamic(tmp_path / "one.onnx", tmp_path / "many.onnx")


def test_parity_refuses_outputs_of_another_shape(tmp_path: Path) -> None:
    src = reshape_model(tmp_path / "one.onnx")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 3])],
    )
    other = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    other.ir_version = 8
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="shape"):
        batch_parity(src, tmp_path / "other.onnx", np.zeros((2, 2, 3), np.float32))


def image_model(path: Path, dims: list[int] | None = None) -> Path:
    """x [1, 3, 4, 6] -> Relu -> y [1, 3, 4, 6]."""
    dims = dims or [1, 3, 4, 6]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_image_size_becomes_symbolic_and_runs_other_sizes(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = image_model(tmp_path / "m.onnx")
    make_batch_dynamic(path, path)
    make_size_dynamic(path, {"y": {2: "height", 3: "width"}})
    model = onnx.load(str(path))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(model.graph.output[0]) == ["batch", 3, "height", "width"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 10)).astype(np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


def test_a_size_rewrite_refuses_what_it_cannot_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an N x C x H x W"):
        make_size_dynamic(image_model(tmp_path / "flat.onnx", [1, 24]), {})
    with pytest.raises(ValueError, match="no output named"):
        make_size_dynamic(image_model(tmp_path / "a.onnx"), {"z": {1: "n"}})
    with pytest.raises(ValueError, match="no axis 7"):
        make_size_dynamic(image_model(tmp_path / "b.onnx"), {"y": {7: "n"}})
