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


async def load(url: str, root: psutil.Process, minutes: float) -> list[tuple[int, float]]:
    """Detect traffic and batches for ``minutes``; (seconds, RSS MB) of the detector worker every 10 s."""
    jpegs, samples = photos(), []
    stop = time.monotonic() + minutes * 60
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def traffic(offset: int) -> None:
            i = offset
            while time.monotonic() < stop:
                answer = await client.post("/api/v1/detect", files={"image": ("p.jpg", jpegs[i % len(jpegs)])})
                answer.raise_for_status()
                i += 1

        async def batches() -> None:
            n = 0
            while time.monotonic() < stop:
                await asyncio.sleep(20)
                files = [("images", (f"{j}.jpg", jpegs[(j + n) % len(jpegs)], "image/jpeg")) for j in range(16)]
                answer = await client.post("/api/v1/batch", files=files, data={"task": "detect", "mode": "inline"})
                answer.raise_for_status()
                n += 1

        async def sampler() -> None:
            worker, started = detector_worker(root), time.monotonic()
            while time.monotonic() < stop:
                samples.append((round(time.monotonic() - started), round(worker.memory_info().rss / 2**20, 1)))
                await asyncio.sleep(10)

        await asyncio.gather(*(traffic(k) for k in range(6)), batches(), sampler())
    return samples


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
            samples = asyncio.run(load(server.url, psutil.Process(server.process.pid), minutes))
        finally:
            server.stop()
    return {"variant": variant, "minutes": minutes, "samples": samples}


def summary(result: dict[str, Any]) -> list[Any]:
    """Peak RSS, RSS at 60-120 s and in the last minute, and when it came within 1 % of its peak."""
    samples = result["samples"]
    peak = max(rss for _, rss in samples)
    first = [rss for t, rss in samples if 60 <= t < 120]
    last = [rss for _, rss in samples[-6:]]
    settled = next(t for t, rss in samples if rss >= 0.99 * peak)
    growth = 100 * (sum(last) / len(last) / (sum(first) / len(first)) - 1)
    return [result["variant"], samples[0][1], sum(first) / len(first), sum(last) / len(last), peak, settled, growth]


def render(results: list[dict[str, Any]]) -> str:
    headers = ["variant", "RSS at start", "RSS 60-120 s", "RSS last minute", "peak RSS", "within 1 % of peak at s",
               "growth % (last minute vs 60-120 s)"]  # fmt: skip
    machine = "\n".join(f"- {k}: {v}" for k, v in machine_facts().items())
    minutes = ", ".join(str(r["minutes"]) for r in results)
    return f"""# The detector service's memory under load

Made by `python benchmarks/memory_detector.py` ({minutes} minutes a variant): the detector worker's RSS in MB,
every 10 s, under detect requests at concurrency 6 and an inline 16-image detect batch every 20 s, the models in
their own services (`CV_MODELS_IN_PROCESS=false`, `CV_ORT_CPU_MAX_BATCH` 4). The worker here is a dependency of
`services.api:Api`, so it imports the api's whole graph and starts near 300 MB; a detector served on its own
(`services.detector:DetectorService`, the native topology of benchmarks/reports/memory.md) rests at ~180 MB RSS. What
this report compares is the growth under load, between rows.

The two rows "before the sliced contract" were measured at 08:40 UTC on a quiet machine by this script's first draft
(the same load, sampling and variants); the others after services/models/contract.py began to run a batch slice by
slice (each slice preprocessed just before its run), at 10:01-10:14 UTC while a training job ran at nice 19 beside it
(memory, not speed, is what is compared). `LD_PRELOAD=...libjemalloc.so.2`: jemalloc instead of glibc's malloc
(Debian's libjemalloc2), which keeps 15 MB less here.

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
