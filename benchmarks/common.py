"""What the benchmarks share: latency statistics, a timing loop, the two photos, machine facts, Markdown tables."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def stats(samples_ms: list[float]) -> dict[str, float]:
    """p50, p99 and mean of latencies in milliseconds."""
    a = np.asarray(samples_ms or [float("nan")])
    return {"n": len(samples_ms), "mean": float(a.mean()), **{f"p{q}": float(np.percentile(a, q)) for q in (50, 99)}}


def timed(call: Callable[[], object], calls: int, warmup: int = 10) -> dict[str, float]:
    samples = []
    for i in range(warmup + calls):
        t0 = time.perf_counter()
        call()
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return stats(samples)


def one_and_two_threads(call: Callable[[], object], calls: int) -> dict[str, float]:
    """CPU ms per call on one thread (``cpu_ms``), and wall ms per call with two threads calling at once
    (``two_threads_wall_ms``): how a step that releases the GIL shares two cores. A tenth of ``calls`` warm up."""
    for _ in range(max(2, calls // 10)):
        call()
    cpu = time.process_time()
    for _ in range(calls):
        call()
    one = (time.process_time() - cpu) / calls * 1000

    def half() -> None:
        for _ in range(calls // 2):
            call()

    threads = [threading.Thread(target=half) for _ in range(2)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two = (time.perf_counter() - wall) / max(1, 2 * (calls // 2)) * 1000
    return {"cpu_ms": one, "two_threads_wall_ms": two}


def cost_cells(row: dict[str, Any], before: str, after: str) -> list[str]:
    """A row of two paths' :func:`one_and_two_threads` figures: CPU ms of each, their ratio, wall ms of each."""
    cpu = row[before]["cpu_ms"], row[after]["cpu_ms"]
    wall = row[before]["two_threads_wall_ms"], row[after]["two_threads_wall_ms"]
    return [f"{cpu[0]:.3f}", f"{cpu[1]:.3f}", f"{cpu[0] / cpu[1]:.2f}x", f"{wall[0]:.3f}", f"{wall[1]:.3f}"]


NO_DATASETS = "Not run: no data sets' mirror folder (`--datasets DIR` or `CV_DATASETS_MIRROR_DIR`)."


def photos() -> dict[str, bytes]:
    """scikit-image's chelsea and astronaut, JPEG-encoded once (quality 90)."""
    from skimage import data

    buffers = {name: io.BytesIO() for name in ("chelsea", "astronaut")}
    for name, buffer in buffers.items():
        Image.fromarray(getattr(data, name)()).save(buffer, "JPEG", quality=90)
    return {name: buffer.getvalue() for name, buffer in buffers.items()}


def machine_facts() -> dict[str, Any]:
    import bentoml
    import onnxruntime

    from services.config import ServingSettings

    cpu = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
    s = ServingSettings()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": (cpu or ["unknown"])[0],
        "python": sys.version.split()[0],
        "onnxruntime": onnxruntime.__version__,
        "bentoml": bentoml.__version__,
        "serving settings": f"models_in_process={s.run_models_in_process}, micro_batch_size={s.micro_batch_size}, "
        f"max_concurrent_runs={s.max_concurrent_runs}, max_batch_size={s.max_batch_size}, "
        f"max_latency_ms={s.max_latency_ms}, ort_intra_op_threads={s.ort_intra_op_threads}, "
        f"ort_solo_threads={s.ort_solo_threads}, inline_alone_max_pixels={s.inline_alone_max_pixels}, "
        f"decode_inline_max_pixels={s.decode_inline_max_pixels}, "
        f"gc_freeze_at_start={s.gc_freeze_at_start}, "
        f"log_level={s.log_level}",
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    body = ["| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *body])


def write_report(out: Path, markdown: str, data: Any) -> Path:
    """A benchmark's report: ``out`` (Markdown) and the figures behind it beside it (``.json``); prints the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    out.write_text(markdown)
    print(out)
    return out
