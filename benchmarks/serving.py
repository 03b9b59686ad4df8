"""Serving benchmark: bare ONNX Runtime, the in-process pipeline and `bentoml serve` over HTTP, in one run.

Writes benchmarks/reports/serving.md (method, machine facts, tables, targets) and serving.json beside it; see --help.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/serving.py` must find services/ and tests/

from benchmarks.common import machine_facts, photos, stats, timed  # noqa: E402
from benchmarks.serving_report import LOG_ISSUES, MODEL_OF, STAGES, Results, render  # noqa: E402

log = logging.getLogger("benchmarks.serving")
# route -> (path, photo, form fields): chelsea is a cat, astronaut has a person to detect.
ROUTES: dict[str, tuple[str, str, dict[str, str]]] = {
    "classify": ("/api/v1/classify", "chelsea", {"top_k": "5"}),
    "detect": ("/api/v1/detect", "astronaut", {}),
    "search": ("/api/v1/search", "chelsea", {"top_k": "5"}),
}


def bare_ort(name: str, image: np.ndarray, calls: int, batch: int = 1) -> dict[str, Any]:
    """session.run alone, on the session OrtRunner builds (intra-op threads, ORT_ENABLE_ALL, providers)."""
    from services.config import ServingSettings
    from services.models.preprocessing import prepare
    from services.models.runtime import OrtRunner
    from services.models.store import list_versions

    settings, entry = ServingSettings(), list_versions(name)[-1]
    precision = "int8" if settings.prefer_int8 and "int8" in entry.paths else "fp32"
    runner = OrtRunner(
        entry.paths[precision],
        input_name=entry.spec.input.name,
        output_name=entry.spec.output_name,
        providers=settings.ort_providers,
        threads=settings.ort_intra_op_threads,
    )
    feed = {runner.input_name: np.repeat(prepare(image, entry.spec.input).tensor[None], batch, axis=0)}
    return {
        **timed(lambda: runner.session.run([runner.output_name], feed), calls),
        "precision": precision,
        "input": entry.spec.input.height,
        "batch": batch,
    }


def in_process(plan: argparse.Namespace, jpegs: dict[str, bytes]) -> Results:
    """Bare ORT and the in-process pipeline (ModelWorker.run) at batch 1; bare ORT at batch 16 per image."""
    from services.config import ServingSettings
    from services.models.worker import InferenceItem, ModelWorker, build_pool

    cat, person = (np.asarray(Image.open(io.BytesIO(jpegs[k])).convert("RGB")) for k in ("chelsea", "astronaut"))
    pipelines = {}
    for model, image, params in (("classifier", cat, {"top_k": 5}), ("detector", person, {})):
        worker, item = ModelWorker(build_pool(model, ServingSettings())), InferenceItem(image=image, params=params)
        pipelines[model] = timed(partial(worker.run, [item]), plan.bare_calls)
    return {
        "bare": {
            "classifier": bare_ort("classifier", cat, plan.bare_calls),
            "detector": bare_ort("detector", person, plan.bare_calls),
        },
        "pipeline": pipelines,
        # Both files take a batch axis (the detector's is made dynamic at import: training/yolox_batch.py).
        "bare_batch16": {
            model: bare_ort(model, photo, max(10, plan.bare_calls // 10), batch=16)
            for model, photo in (("classifier", cat), ("detector", person))
        },
    }


async def _load(url: str, route: str, jpeg: bytes, concurrency: int, total: int) -> Results:
    """A fixed number of requests issued by ``concurrency`` workers; a summary of the successful ones."""
    (path, _, fields), todo = ROUTES[route], iter(range(total))  # the workers share `todo`
    statuses: Counter[str] = Counter()
    ok: list[tuple[float, dict[str, float]]] = []  # client latency ms, timings_ms plus `hop` and `http`
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=180) as client:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                try:
                    response = await client.post(path, files={"image": ("photo.jpg", jpeg, "image/jpeg")}, data=fields)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latency, timings = (time.perf_counter() - t0) * 1000, response.json().get("timings_ms", {})
                statuses[str(response.status_code)] += 1
                if response.status_code != 200:
                    log.warning("%s answered %d: %s", route, response.status_code, response.text[:200])
                    continue
                total_ms = timings.get("total", latency)
                timings["hop"] = total_ms - sum(timings.get(s, 0.0) for s in STAGES)
                ok.append((latency, {**timings, "http": latency - total_ms}))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "ok": len(ok),
        "statuses": dict(statuses),
        "seconds": seconds,
        "throughput": len(ok) / seconds,
        **stats([latency for latency, _ in ok]),
        "stages": {k: float(np.median([t[k] for _, t in ok if k in t])) for k in sorted({k for _, t in ok for k in t})},
        "mean_batch": float(np.mean([t.get("batch_size", 1.0) for _, t in ok])) if ok else 0.0,
    }


def load(url: str, route: str, jpegs: dict[str, bytes], concurrency: int, total: int, warmup: int) -> Results:
    """Warm up at this concurrency (the adaptive batcher learns its costs), then measure."""
    asyncio.run(_load(url, route, jpegs[ROUTES[route][1]], concurrency, warmup))
    s = asyncio.run(_load(url, route, jpegs[ROUTES[route][1]], concurrency, total))
    log.info(
        "%s c=%d: %.1f req/s, p50 %.1f ms, p99 %.1f ms, statuses %s",
        route,
        concurrency,
        s["throughput"],
        s["p50"],
        s["p99"],
        s["statuses"],
    )
    return s


def throughput(url: str, jpegs: dict[str, bytes], plan: argparse.Namespace) -> dict[str, dict[int, Results]]:
    """classify and detect sequentially (concurrency 1, 20 warm-up requests) and at each load concurrency."""
    return {
        r: {
            c: load(url, r, jpegs, c, plan.requests if c > 1 else plan.sequential, plan.warmup if c > 1 else 20)
            for c in (1, *plan.concurrencies)
        }
        for r in MODEL_OF
    }


def _cpu() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this benchmark's live process tree)."""
    machine, me, ours = psutil.cpu_times(), psutil.Process(), 0.0
    for proc in [me, *me.children(recursive=True)]:
        with suppress(psutil.Error):
            ours += sum(proc.cpu_times()[:2])
    return machine.user + machine.nice + machine.system + machine.irq + machine.softirq, ours


@contextmanager
def phase(name: str, record: dict[str, dict[str, float]]) -> Iterator[None]:
    """Wall time of a phase and the CPU that processes outside this benchmark used meanwhile."""
    (busy0, ours0), started = _cpu(), time.monotonic()
    yield
    (busy1, ours1), wall = _cpu(), time.monotonic() - started
    other = max(0.0, (busy1 - busy0) - (ours1 - ours0))
    record[name] = {"wall_s": wall, "other_cpu_s": other, "other_cores": other / wall}


@contextmanager
def serve(env: dict[str, str], workdir: Path, label: str, results: Results) -> Iterator[str]:
    """`bentoml serve services.api:Api` with ``env``; counts error lines of its log afterwards."""
    from tests.integration.server import start_server

    log_path = workdir / f"server-{label}.log"
    log.info("starting server %s (log %s)", label, log_path)
    server = start_server(log_path, env, timeout=180)
    try:
        with phase(f"server {label}", results["load"]):
            yield server.url
    finally:
        server.stop()
        results["server_logs"][label] = {k: log_path.read_text(errors="replace").count(k) for k in LOG_ISSUES}


def measure(plan: argparse.Namespace, workdir: Path) -> Results:
    jpegs = photos()
    results: Results = {
        "machine": {
            **machine_facts(),
            "server": "the models in their own services (CV_MODELS_IN_PROCESS=false), the settings above otherwise",
        },
        "plan": {k: str(v) for k, v in vars(plan).items()},
        "server_logs": {},
        "load": {},
    }
    with phase("in process", results["load"]):
        results["in_process"] = in_process(plan, jpegs)
    env = {"CV_DATA_DIR": str(workdir / "data"), "BENTOML_HOME": os.environ["BENTOML_HOME"]}
    log.info("building the search gallery (%d Tiny-ImageNet val images)", plan.gallery)
    subprocess.run(
        [sys.executable, "-m", "services.index.build_gallery", "--tiny-imagenet-val", "--limit", str(plan.gallery)],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    with serve({**env, "CV_BATCHING_ENABLED": "true"}, workdir, "on", results) as url:
        results["search"] = load(url, "search", jpegs, 1, plan.sequential, 20)
        results["on"] = throughput(url, jpegs, plan)
    with serve({**env, "CV_BATCHING_ENABLED": "false"}, workdir, "off", results) as url:
        results["off"] = throughput(url, jpegs, plan)
    top = max(plan.concurrencies)
    results["sweep"] = {16: results["on"]["classify"][top]} if 16 in plan.batch_sizes else {}
    for size in (s for s in plan.batch_sizes if s != 16):
        with serve({**env, "CV_MAX_BATCH_SIZE": str(size)}, workdir, f"max_batch_size={size}", results) as url:
            results["sweep"][size] = load(url, "classify", jpegs, top, plan.requests, plan.warmup)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--requests", type=int, default=600, help="requests per throughput run")
    add("--sequential", type=int, default=200, help="requests per route at concurrency 1")
    add("--concurrencies", type=int, nargs="+", default=[16, 32])
    add("--batch-sizes", type=int, nargs="*", default=[8, 16, 32], help="CV_MAX_BATCH_SIZE values to sweep")
    add("--quick", action="store_true", help="a smoke run: small counts, no sweep")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "serving.md", help="report (.json beside it)")
    parser.set_defaults(warmup=64, bare_calls=200, gallery=200)  # warm-up requests, in-process calls, gallery images
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(sequential=30, requests=64, warmup=16, bare_calls=30, gallery=50, batch_sizes=[])
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "services"):  # one line per request / batch otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = parse_args(argv)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))  # before anything imports bentoml
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cv-bench-") as tmp:
        results = measure(plan, Path(tmp))
    results["machine"]["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(render(results))
    plan.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    print(plan.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
