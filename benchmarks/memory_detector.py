"""How the detector service's worker fills its memory under load, with an environment variant (e.g. MALLOC_ARENA_MAX=2).

Starts ``bentoml serve services.api:Api`` with the models in their own services (result cache off;
tests/integration/server.py's ``start_server``), sends detect
requests at concurrency 6 (five photos, 451x300 to 1280x720) and an inline 16-image detect batch every 20 s, and reads
the detector worker's RSS every 10 s. The soak of benchmarks/memory.py saw that worker grow for 16 minutes at a
quarter of this detect load; this says whether it levels off, and where. Each run prints one JSON line;
``--render`` writes benchmarks/reports/memory_detector.md from saved lines.

    python benchmarks/memory_detector.py --variant default --minutes 6 > default.json
    python benchmarks/memory_detector.py --variant MALLOC_ARENA_MAX=2 --minutes 6 > arena2.json
    python benchmarks/memory_detector.py --render default.json arena2.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, table, write_report  # noqa: E402


def _jpeg(pixels: Any, size: tuple[int, int] | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def photos() -> list[bytes]:
    from skimage import data

    return [
        _jpeg(data.astronaut(), (810, 1080)),
        _jpeg(data.chelsea()),
        _jpeg(data.coffee()),
        _jpeg(data.rocket()),
        _jpeg(data.astronaut(), (1280, 720)),
    ]


def detector_worker(root: psutil.Process) -> psutil.Process:
    """The worker process of the detector service among ``root``'s descendants."""
    for process in root.children(recursive=True):
        command = process.cmdline()
        named = "--service-name" in command and "--worker-id" in command
        if named and "detector" in command[command.index("--service-name") + 1].lower():
            return process
    raise RuntimeError("no detector service worker found")


async def load(url: str, root: psutil.Process, minutes: float) -> tuple[list[tuple[int, float]], dict[str, Any]]:
    """Detect traffic and batches for ``minutes``.

    Returns:
        (seconds, RSS MB) of the detector worker every 10 s, and what the load got: single detect answers a second,
        their p50, and the detector worker's CPU milliseconds per image it ran (singles and batch images).
    """
    jpegs, samples, latencies, batch_images = photos(), [], [], 0
    worker = detector_worker(root)
    cpu_start, began = sum(worker.cpu_times()[:2]), time.monotonic()
    stop = began + minutes * 60
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def traffic(offset: int) -> None:
            i = offset
            while time.monotonic() < stop:
                sent = time.perf_counter()
                answer = await client.post("/api/v1/detect", files={"image": ("p.jpg", jpegs[i % len(jpegs)])})
                answer.raise_for_status()
                latencies.append(time.perf_counter() - sent)
                i += 1

        async def batches() -> None:
            nonlocal batch_images
            n = 0
            while time.monotonic() < stop:
                await asyncio.sleep(20)
                files = [("images", (f"{j}.jpg", jpegs[(j + n) % len(jpegs)], "image/jpeg")) for j in range(16)]
                answer = await client.post("/api/v1/batch", files=files, data={"task": "detect", "mode": "inline"})
                answer.raise_for_status()
                batch_images += 16
                n += 1

        async def sampler() -> None:
            while time.monotonic() < stop:
                samples.append((round(time.monotonic() - began), round(worker.memory_info().rss / 2**20, 1)))
                await asyncio.sleep(10)

        await asyncio.gather(*(traffic(k) for k in range(6)), batches(), sampler())
    elapsed, cpu = time.monotonic() - began, sum(worker.cpu_times()[:2]) - cpu_start
    latencies.sort()
    load_facts = {
        "detect_per_s": round(len(latencies) / elapsed, 2),
        "detect_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "worker_cpu_ms_per_image": round(1000 * cpu / (len(latencies) + batch_images), 2),
    }
    return samples, load_facts


def run(variant: str, minutes: float) -> dict[str, Any]:
    """One variant: the server started as the integration tests start it (model services, result cache off)."""
    from tests.integration.server import start_server

    env: dict[str, str | None] = {}
    if variant != "default":
        key, value = variant.split("=", 1)
        env[key] = value
    with tempfile.TemporaryDirectory(prefix="cv-memory-detector-") as tmp:
        server = start_server(Path(tmp) / "serve.log", {**env, "CV_DATA_DIR": str(Path(tmp) / "data")}, 240)
        try:
            samples, load_facts = asyncio.run(load(server.url, psutil.Process(server.process.pid), minutes))
        finally:
            server.stop()
    return {"variant": variant, "minutes": minutes, "samples": samples, "load": load_facts}


def summary(result: dict[str, Any]) -> list[Any]:
    """Peak RSS, RSS at 60-120 s and in the last minute, and when it came within 1 % of its peak."""
    samples = result["samples"]
    peak = max(rss for _, rss in samples)
    first = [rss for t, rss in samples if 60 <= t < 120]
    last = [rss for _, rss in samples[-6:]]
    settled = next(t for t, rss in samples if rss >= 0.99 * peak)
    growth = 100 * (sum(last) / len(last) / (sum(first) / len(first)) - 1)
    facts = result.get("load", {})  # not recorded by the runs before 2026-12-05 13:30 UTC
    got = [facts.get(key, "n/a") for key in ("detect_per_s", "detect_p50_ms", "worker_cpu_ms_per_image")]
    return [result.get("label", result["variant"]), samples[0][1], sum(first) / len(first), sum(last) / len(last),
            peak, settled, growth, *got]  # fmt: skip


def render(results: list[dict[str, Any]]) -> str:
    headers = ["variant", "RSS at start", "RSS 60-120 s", "RSS last minute", "peak RSS", "within 1 % of peak at s",
               "growth % (last minute vs 60-120 s)", "detect req/s", "detect p50 ms",
               "worker CPU ms per image"]  # fmt: skip
    machine = "\n".join(f"- {k}: {v}" for k, v in machine_facts().items())
    minutes = ", ".join(str(r["minutes"]) for r in results)
    return f"""# The detector service's memory under load

Made by `python benchmarks/memory_detector.py` ({minutes} minutes a variant): the detector worker's RSS in MB,
every 10 s, under detect requests at concurrency 6 and an inline 16-image detect batch every 20 s, the models in
their own services (`CV_MODELS_IN_PROCESS=false`, `CV_ORT_CPU_MAX_BATCH` 4). The worker here is a dependency of
`services.api:Api`, so it imports the api's whole graph and starts near 300 MB; a detector served on its own
(`services.detector:DetectorService`, the native topology of benchmarks/reports/memory.md) rests at ~180 MB RSS. What
this report compares is the growth under load, between rows.

Rows in the order they were measured, all on 2026-12-05. The two "before the sliced contract" at 08:40 UTC on a quiet
machine by this script's first draft (the same load, sampling and variants); the next two after
services/models/contract.py began to run a batch slice by slice (each slice preprocessed just before its run), at
10:01-10:14 UTC while a training job ran at nice 19 beside it (memory, not speed, compared there).
`LD_PRELOAD=...libjemalloc.so.2`: jemalloc instead of glibc's malloc (Debian's libjemalloc2). Those runs did not record
the load; the last three did, one after the other on a quiet machine from 13:47 UTC, and compare the C heap policies
of services/process.py: trimming glibc's free heap pages after a batch at most once a second (`malloc_trim`, the
default since), neither (`CV_MALLOC_TRIM_INTERVAL_S=0`: glibc as shipped before), and a fixed mmap threshold of 128 KiB
besides the trim (`CV_MALLOC_MMAP_THRESHOLD_BYTES=131072`: every buffer that large mapped and unmapped on its own). The
worker's CPU per image (its user + system CPU seconds over single images and batch images answered) is the cost
column; requests a second and p50 are the six clients' single detect requests.

The last five rows (17:34-17:52 UTC, a quiet machine, 3 and 2.5 minutes a row) try smaller ONNX Runtime runs for the
detector alone (`CV_ORT_CPU_MAX_BATCH_PER_MODEL`): runs of 2 and of 1 image against 4, then 1 and 4 again in the other
order. Smaller runs hold less (peak 360 and 340 MB against 398-400) but cost the worker 17-23 % more CPU per image
and answer 14-19 % fewer requests a second, in both orders, so the detector keeps runs of 4 and a deployment short of
memory can choose 1 (-60 MB) at that price. This set's CPU figures are higher than the 13:47 set's at the same settings
(19.2-19.8 ms against 16.1: another hour of a shared machine); compare within a set.

{table(headers, [summary(r) for r in results])}

## Machine

{machine}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", default="default", help="default, or NAME=VALUE set in the servers' environment")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--render", nargs="+", type=Path, help="write the report from these JSON lines instead")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "memory_detector.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    if args.render:
        results = [json.loads(path.read_text().strip().splitlines()[-1]) for path in args.render]
        write_report(args.out, render(results), results)
        return 0
    print(json.dumps(run(args.variant, args.minutes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
