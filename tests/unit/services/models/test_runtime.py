"""OrtRunner over a tiny ONNX graph built in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.models.runtime import OrtRunner, TensorrtOptions, available_providers, session_providers


def runner(
    path: Path, *, input_name: str = "images", output_name: str = "out", cpu_max_batch: int | None = None
) -> OrtRunner:
    return OrtRunner(
        path,
        input_name=input_name,
        output_name=output_name,
        providers=["CPUExecutionProvider"],
        threads=1,
        cpu_max_batch=cpu_max_batch,
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


class _CountingSession:
    """The runner's session, recording the batch size of every run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.sizes: list[int] = []

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.sizes.append(len(next(iter(feeds.values()))))
        return list(self.session.run(outputs, feeds))


def test_cpu_max_batch_runs_a_larger_batch_in_slices_with_the_same_answer(tiny_onnx: Path) -> None:
    capped = runner(tiny_onnx, cpu_max_batch=2)
    counting = capped.session = _CountingSession(capped.session)
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(5)])
    np.testing.assert_allclose(capped(batch), runner(tiny_onnx)(batch))
    assert counting.sizes == [2, 2, 1]
    np.testing.assert_allclose(capped(batch[:2]), [[0, 0, 0], [1, 1, 1]])
    assert counting.sizes[3:] == [2], "a batch within the cap is one run"


def test_cpu_max_batch_never_raises_a_fixed_batch(tiny_onnx_batch1: Path) -> None:
    fixed = runner(tiny_onnx_batch1, cpu_max_batch=4)
    assert fixed.max_batch == 1
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(3)])
    np.testing.assert_allclose(fixed(batch), [[0, 0, 0], [1, 1, 1], [2, 2, 2]])


def test_tensorrt_options_map_to_provider_options(tmp_path: Path) -> None:
    options = TensorrtOptions(fp16=True, int8=False, cache_dir=tmp_path / "trt").provider_options()
    assert options == {
        "trt_fp16_enable": "True",
        "trt_int8_enable": "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "trt"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "trt"),
    }
    assert TensorrtOptions(fp16=False, int8=True).provider_options() == {
        "trt_fp16_enable": "False",
        "trt_int8_enable": "True",
    }


def test_session_providers_give_options_to_tensorrt_only(tmp_path: Path) -> None:
    cache = tmp_path / "trt"
    names = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = session_providers(names, TensorrtOptions(cache_dir=cache))
    assert chosen[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert chosen[0] == ("TensorrtExecutionProvider", TensorrtOptions(cache_dir=cache).provider_options())
    assert cache.is_dir(), "the engine cache folder is made when TensorRT is chosen"
    assert session_providers(names, None) == names


def test_session_providers_without_tensorrt_make_no_cache_folder(tmp_path: Path) -> None:
    chosen = session_providers(["CPUExecutionProvider"], TensorrtOptions(cache_dir=tmp_path / "trt"))
    assert chosen == ["CPUExecutionProvider"]
    assert not (tmp_path / "trt").exists()


def test_ort_runner_with_tensorrt_options_on_a_cpu_build(tiny_onnx: Path, tmp_path: Path) -> None:
    ort_runner = OrtRunner(
        tiny_onnx,
        input_name="images",
        output_name="out",
        providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        threads=1,
        tensorrt=TensorrtOptions(cache_dir=tmp_path / "trt"),
    )
    if "TensorrtExecutionProvider" not in available_providers(["TensorrtExecutionProvider"]):
        assert ort_runner.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(ort_runner(np.ones((2, 3, 4, 4), dtype=np.float32)), np.ones((2, 3)))


@pytest.mark.parametrize(("spinning", "entry"), [(True, "1"), (False, "0")])
def test_ort_runner_sets_whether_idle_threads_spin(tiny_onnx: Path, spinning: bool, entry: str) -> None:
    ort_runner = OrtRunner(
        tiny_onnx, input_name="images", output_name="out", providers=[], threads=2, spinning=spinning
    )
    options = ort_runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry


@pytest.mark.parametrize("on", [True, False])
def test_ort_runner_sets_the_arena_and_memory_patterns_as_asked(tiny_onnx: Path, on: bool) -> None:
    ort_runner = OrtRunner(
        tiny_onnx,
        input_name="images",
        output_name="out",
        providers=["CPUExecutionProvider"],
        threads=1,
        cpu_mem_arena=on,
        mem_pattern=on,
    )
    options = ort_runner.session.get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern) == (on, on)
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(2)])
    np.testing.assert_allclose(ort_runner(batch), [[0, 0, 0], [1, 1, 1]])  # same answers either way


def _solo_runner(path: Path, solo_threads: int = 2, threads: int = 1) -> OrtRunner:
    return OrtRunner(
        path,
        input_name="images",
        output_name="out",
        providers=["CPUExecutionProvider"],
        threads=threads,
        spinning=False,
        solo_threads=solo_threads,
    )


def test_a_lone_run_takes_the_solo_session_whose_threads_spin_only_during_a_run(tiny_onnx: Path) -> None:
    ort_runner = _solo_runner(tiny_onnx)
    assert ort_runner.solo_session is None  # made on the first lone run (the warm-up at start), not before
    batch = np.stack([np.full((3, 4, 4), i, dtype=np.float32) for i in range(2)])
    np.testing.assert_allclose(ort_runner(batch), [[0, 0, 0], [1, 1, 1]])
    options = ort_runner.solo_session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    shared = ort_runner.session.get_session_options()
    assert (shared.intra_op_num_threads, shared.get_session_config_entry("session.intra_op.allow_spinning")) == (1, "0")


def test_runs_under_load_keep_the_shared_session(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.models import runtime

    ort_runner = _solo_runner(tiny_onnx)
    monkeypatch.setattr(runtime.DEMAND, "_count", 2)  # a second request is being served
    ort_runner(np.ones((1, 3, 4, 4), dtype=np.float32))
    assert ort_runner.solo_session is None
    monkeypatch.setattr(runtime.DEMAND, "_count", 1)
    ort_runner._in_flight = 1  # another run of this file is in flight
    ort_runner(np.ones((1, 3, 4, 4), dtype=np.float32))
    assert ort_runner.solo_session is None
    assert ort_runner._in_flight == 1  # each run gives back what it counted


@pytest.mark.parametrize(("solo_threads", "threads"), [(0, 1), (2, 2), (1, 1)])
def test_no_solo_session_where_it_would_not_add_threads(tiny_onnx: Path, solo_threads: int, threads: int) -> None:
    ort_runner = _solo_runner(tiny_onnx, solo_threads, threads)
    ort_runner(np.ones((1, 3, 4, 4), dtype=np.float32))
    assert ort_runner.solo_threads == 0 and ort_runner.solo_session is None


def test_demand_counts_what_is_being_served() -> None:
    from services.models.runtime import Demand

    demand = Demand()
    with demand.serving(3):
        assert demand.count == 3
        with demand.serving():
            assert demand.count == 4
    assert demand.count == 0
    with pytest.raises(RuntimeError), demand.serving(2):
        raise RuntimeError
    assert demand.count == 0
