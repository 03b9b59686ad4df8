"""Unit-test fixtures. Unit tests use fakes (and at most a tiny ONNX graph built here): no model store, no network."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import numpy as np
import pytest


@pytest.fixture
def restore_services_logger() -> Iterator[logging.Logger]:
    """Undo what ``configure_logging`` does to the ``services`` logger tree."""
    logger = logging.getLogger("services")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_tiny_onnx(path: Path, batch: int | str = "N") -> Path:
    """A real ONNX file: ``images`` (batch x 3 x H x W) -> ``out`` (batch x 3), the per-channel mean."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["out"], axes=[2, 3], keepdims=0)],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny graph with a dynamic batch axis."""
    return write_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_onnx_batch1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny graph exported with its batch axis fixed at 1 (as the YOLOX-Nano file is)."""
    return write_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny-b1.onnx", batch=1)
