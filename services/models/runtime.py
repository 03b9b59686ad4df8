"""ONNX Runtime sessions: one per (version, precision), on the best available provider.

TensorRT or CUDA are used when this onnxruntime build offers them (a GPU machine with
``onnxruntime-gpu``); otherwise the CPU provider. ``training/tensorrt.py`` builds standalone engines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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
    ) -> None:
        # Imported when a session is made, not when the module is: BentoML's supervisor of a model service and the
        # api import this module (for the service's types) but never run a model (benchmarks/reports/memory.md).
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = cpu_mem_arena  # off: buffers go back to the allocator after each run
        options.enable_mem_pattern = mem_pattern
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        chosen = session_providers(available_providers(providers), tensorrt)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
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
        log.info("onnx session ready", extra={"file": path.name, "providers": self.session.get_providers()})

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 N x C x H x W batch."""
        step = self.max_batch
        if step is None or (len(batch) == step if self.fixed_batch else len(batch) <= step):
            (output,) = self.session.run([self.output_name], {self.input_name: batch})
            return np.asarray(output)
        parts = [
            self.session.run([self.output_name], {self.input_name: batch[i : i + step]})[0]
            for i in range(0, len(batch), step)
        ]
        return np.concatenate(parts)
