"""ONNX Runtime sessions: one per (version, precision), on the best available provider.

TensorRT or CUDA are used when this onnxruntime build offers them (a GPU machine with
``onnxruntime-gpu``); otherwise the CPU provider. ``training/tensorrt.py`` builds standalone engines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def available_providers(preferred: list[str]) -> list[str]:
    """The preferred providers this onnxruntime build has, in order; CPU always last."""
    import onnxruntime as ort  # here, not at the top: see OrtRunner.__init__

    have = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in have and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


@dataclass(frozen=True)
class TensorrtOptions:
    """ONNX Runtime's TensorRT provider options; they apply only where that provider is chosen."""

    fp16: bool = True
    int8: bool = False  # for Q/DQ files: TensorRT reads their scales, no calibration table needed
    cache_dir: Path | None = None  # engines and timing caches, so a restart does not rebuild them

    def provider_options(self) -> dict[str, str]:
        options = {"trt_fp16_enable": str(self.fp16), "trt_int8_enable": str(self.int8)}
        if self.cache_dir is not None:
            options |= {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(self.cache_dir),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(self.cache_dir),
            }
        return options


def session_providers(names: list[str], tensorrt: TensorrtOptions | None) -> list[str | tuple[str, dict[str, str]]]:
    """Provider names as ``InferenceSession`` takes them, the TensorRT one with its options."""
    if tensorrt is None:
        return list(names)
    if tensorrt.cache_dir is not None and "TensorrtExecutionProvider" in names:
        tensorrt.cache_dir.mkdir(parents=True, exist_ok=True)
    return [(n, tensorrt.provider_options()) if n == "TensorrtExecutionProvider" else n for n in names]


class Demand:
    """How many requests (or images) this process is serving now, counted by its outermost layer.

    The api's admission control counts its admitted inference requests, a model service counts the images of the
    batches it runs; a run is "alone" (:class:`OrtRunner`'s solo session) only while this is at most one. With no
    layer counting (a job worker, a script) it stays 0, and only the runs in flight decide.
    """

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def add(self, n: int) -> None:
        with self._lock:
            self._count += n

    @contextmanager
    def serving(self, n: int = 1) -> Iterator[None]:
        self.add(n)
        try:
            yield
        finally:
            self.add(-n)


DEMAND = Demand()


def serving_alone() -> bool:
    """Whether this process serves at most one request now (DEMAND): the moment a lone request may skip hand-offs."""
    return DEMAND.count <= 1


def new_session(
    path: Path,
    providers: list[str | tuple[str, dict[str, str]]],
    *,
    threads: int,
    spinning: bool,
    stop_spinning: bool = False,
    arena: tuple[bool, bool] = (True, True),
) -> Any:
    """An ONNX Runtime session as the product makes them: ``threads`` intra-op threads, spinning or not, optimised.

    ``stop_spinning``: the threads stop spinning when a run ends, so an idle session takes no CPU (the solo session).
    ``arena``: the CPU memory arena and memory-pattern planning (off: buffers go back to the allocator after each run).
    """
    # Imported when a session is made, not when the module is: BentoML's supervisor of a model service and the
    # api import this module (for the service's types) but never run a model (benchmarks/reports/memory.md).
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena, options.enable_mem_pattern = arena
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def may_run_inline(max_pixels: int) -> bool:
    """Whether a request may skip its thread hand-offs now: inline is on (``max_pixels`` > 0) and the process serves
    it alone. The caller then checks its images are at most ``max_pixels`` (ADR 0019)."""
    return max_pixels > 0 and serving_alone()


class OrtRunner:
    """Runs one ONNX file; returns one named output for a batch of input tensors."""

    def __init__(
        self,
        path: Path,
        *,
        input_name: str,
        output_name: str,
        providers: list[str],
        threads: int,
        tensorrt: TensorrtOptions | None = None,
        spinning: bool = True,
        cpu_mem_arena: bool = True,
        mem_pattern: bool = True,
        cpu_max_batch: int | None = None,
        solo_threads: int = 0,
    ) -> None:
        self.path = path
        self._chosen = session_providers(available_providers(providers), tensorrt)
        self._arena = (cpu_mem_arena, mem_pattern)
        self.session = self._session(threads, spinning=spinning)
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if input_name not in inputs:
            raise ValueError(f"{path.name} has no input {input_name!r} (inputs: {sorted(inputs)})")
        if output_name not in outputs:
            raise ValueError(f"{path.name} has no output {output_name!r} (outputs: {sorted(outputs)})")
        self.input_name = input_name
        self.output_name = output_name
        batch_dim = next(i.shape[0] for i in self.session.get_inputs() if i.name == input_name)
        # Some exports (the YOLOX-Nano file among them) fix the batch at 1: run such batches image by image.
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        # On the CPU provider a larger batch runs in slices of ``cpu_max_batch``: as fast per image, and the memory
        # arena never grows to a 16-image activation set (benchmarks/reports/memory_ort.md). GPUs take it whole.
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.max_batch = self.fixed_batch or (cpu_max_batch if on_cpu else None)
        # A run that starts while no other run of this file is in flight and the process serves one request (DEMAND:
        # a request alone, as at concurrency 1) goes to a second session with ``solo_threads`` intra-op threads that
        # spin while the run lasts and stop when it ends: a lone run takes every core at no cost to other work, and
        # runs that overlap keep one thread each (benchmarks/reports/peers.md). Made on its first run (the warm-up at
        # start), on the CPU provider only.
        self.solo_threads = solo_threads if on_cpu and solo_threads > threads else 0
        self._solo: Any = None
        self._in_flight = 0
        self._lock = threading.Lock()
        log.info("onnx session ready", extra={"file": path.name, "providers": self.session.get_providers()})

    def _session(self, threads: int, *, spinning: bool, stop_spinning: bool = False) -> Any:
        return new_session(
            self.path, self._chosen, threads=threads, spinning=spinning, stop_spinning=stop_spinning, arena=self._arena
        )

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def solo_session(self) -> Any:
        """The session of lone runs (None until the first, or where ``solo_threads`` is off)."""
        return self._solo

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 N x C x H x W batch."""
        with self._lock:
            alone = self._in_flight == 0 and serving_alone()
            self._in_flight += 1
        try:
            session = self.session
            if alone and self.solo_threads:
                if self._solo is None:  # only a lone run gets here, so it is made once
                    self._solo = self._session(self.solo_threads, spinning=True, stop_spinning=True)
                session = self._solo
            return self._run(session, batch)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _run(self, session: Any, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch
        if step is None or (len(batch) == step if self.fixed_batch else len(batch) <= step):
            (output,) = session.run([self.output_name], {self.input_name: batch})
            return np.asarray(output)
        parts = [
            session.run([self.output_name], {self.input_name: batch[i : i + step]})[0]
            for i in range(0, len(batch), step)
        ]
        return np.concatenate(parts)
