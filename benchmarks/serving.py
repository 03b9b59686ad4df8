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
from collections.abc import Callable, Iterator
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

log = logging.getLogger("benchmarks.serving")
# route -> (path, photo, form fields): chelsea is a cat, astronaut has a person to detect.
ROUTES: dict[str, tuple[str, str, dict[str, str]]] = {
    "classify": ("/api/v1/classify", "chelsea", {"top_k": "5"}),
    "detect": ("/api/v1/detect", "astronaut", {}),
    "search": ("/api/v1/search", "chelsea", {"top_k": "5"}),
}
MODEL_OF = {"classify": "classifier", "detect": "detector"}
STAGES = ("decode", "preprocess", "predict", "postprocess")
TARGET_P50 = {"classify": 15.0, "detect": 35.0}
TARGET_OVERHEAD_MS, TARGET_SPEEDUP = 3.0, 2.5
LOG_ISSUES = ("Traceback", '"level": "ERROR"', '"status": 503', "status=503")
Results = dict[str, Any]


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


def photos() -> dict[str, bytes]:
    """scikit-image's chelsea and astronaut, JPEG-encoded once (quality 90)."""
    from skimage import data
    buffers = {name: io.BytesIO() for name in ("chelsea", "astronaut")}
    for name, buffer in buffers.items():
        Image.fromarray(getattr(data, name)()).save(buffer, "JPEG", quality=90)
    return {name: buffer.getvalue() for name, buffer in buffers.items()}


def bare_ort(name: str, image: np.ndarray, calls: int, batch: int = 1) -> dict[str, Any]:
    """session.run alone, on the session OrtRunner builds (intra-op threads, ORT_ENABLE_ALL, providers)."""
    from services.config import ServingSettings
    from services.models.preprocessing import prepare
    from services.models.runtime import OrtRunner
    from services.models.store import list_versions
    settings, entry = ServingSettings(), list_versions(name)[-1]
    precision = "int8" if settings.prefer_int8 and "int8" in entry.paths else "fp32"
    runner = OrtRunner(entry.paths[precision], input_name=entry.spec.input.name, output_name=entry.spec.output_name,
                       providers=settings.ort_providers, threads=settings.ort_intra_op_threads)
    feed = {runner.input_name: np.repeat(prepare(image, entry.spec.input).tensor[None], batch, axis=0)}
    return {**timed(lambda: runner.session.run([runner.output_name], feed), calls), "precision": precision,
            "input": entry.spec.input.height, "batch": batch}


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
        "bare": {"classifier": bare_ort("classifier", cat, plan.bare_calls),
                 "detector": bare_ort("detector", person, plan.bare_calls)},
        "pipeline": pipelines,
        # Both files take a batch axis (the detector's is made dynamic at import: training/yolox_batch.py).
        "bare_batch16": {model: bare_ort(model, photo, max(10, plan.bare_calls // 10), batch=16)
                         for model, photo in (("classifier", cat), ("detector", person))},
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
    return {"ok": len(ok), "statuses": dict(statuses), "seconds": seconds, "throughput": len(ok) / seconds,
            **stats([latency for latency, _ in ok]), "stages": {k: float(np.median([t[k] for _, t in ok if k in t]))
                                                                for k in sorted({k for _, t in ok for k in t})},
            "mean_batch": float(np.mean([t.get("batch_size", 1.0) for _, t in ok])) if ok else 0.0}


def load(url: str, route: str, jpegs: dict[str, bytes], concurrency: int, total: int, warmup: int) -> Results:
    """Warm up at this concurrency (the adaptive batcher learns its costs), then measure."""
    asyncio.run(_load(url, route, jpegs[ROUTES[route][1]], concurrency, warmup))
    s = asyncio.run(_load(url, route, jpegs[ROUTES[route][1]], concurrency, total))
    log.info("%s c=%d: %.1f req/s, p50 %.1f ms, p99 %.1f ms, statuses %s", route, concurrency, s["throughput"],
             s["p50"], s["p99"], s["statuses"])
    return s


def throughput(url: str, jpegs: dict[str, bytes], plan: argparse.Namespace) -> dict[str, dict[int, Results]]:
    """classify and detect sequentially (concurrency 1, 20 warm-up requests) and at each load concurrency."""
    return {r: {c: load(url, r, jpegs, c, plan.requests if c > 1 else plan.sequential, plan.warmup if c > 1 else 20)
                for c in (1, *plan.concurrencies)} for r in MODEL_OF}


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
    results: Results = {"machine": machine_facts(), "plan": {k: str(v) for k, v in vars(plan).items()},
                        "server_logs": {}, "load": {}}
    with phase("in process", results["load"]):
        results["in_process"] = in_process(plan, jpegs)
    env = {"CV_DATA_DIR": str(workdir / "data"), "BENTOML_HOME": os.environ["BENTOML_HOME"]}
    log.info("building the search gallery (%d Tiny-ImageNet val images)", plan.gallery)
    subprocess.run([sys.executable, "-m", "services.index.build_gallery", "--tiny-imagenet-val", "--limit",
                    str(plan.gallery)], cwd=REPO, env={**os.environ, **env}, check=True, capture_output=True)
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


def machine_facts() -> dict[str, Any]:
    import bentoml
    import onnxruntime

    from services.config import ServingSettings
    cpu = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
    s = ServingSettings()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "nproc": os.cpu_count(),
            "cpu": (cpu or ["unknown"])[0], "python": sys.version.split()[0],
            "onnxruntime": onnxruntime.__version__, "bentoml": bentoml.__version__,
            "serving settings": f"max_batch_size={s.max_batch_size}, max_latency_ms={s.max_latency_ms}, "
                                f"ort_intra_op_threads={s.ort_intra_op_threads}, log_level={s.log_level}"}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    body = ["| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *body])


def derived(r: Results) -> dict[str, dict[str, float]]:
    """Per route: HTTP p50 (concurrency 1) minus the in-process p50s; throughput ON / OFF per concurrency."""
    out = {}
    for x, model in MODEL_OF.items():
        p50, ip = r["on"][x][1]["p50"], r["in_process"]
        out[x] = {"server overhead: HTTP p50 - bare ORT p50 (ms)": p50 - ip["bare"][model]["p50"],
                  "server overhead: HTTP p50 - in-process pipeline p50 (ms)": p50 - ip["pipeline"][model]["p50"]}
        out[x].update({f"batching speed-up at concurrency {c} (ON / OFF req/s)": r["on"][x][c]["throughput"]
                       / max(r["off"][x][c]["throughput"], 1e-9) for c in r["on"][x] if c > 1})
    return out


def targets(r: Results) -> list[tuple[str, str, str, float, bool]]:
    """(key, target, goal, measured, met) per route and target."""
    d, top, rows = derived(r), max(r["on"]["classify"]), []
    for x in MODEL_OF:
        p50, over = r["on"][x][1]["p50"], d[x]["server overhead: HTTP p50 - bare ORT p50 (ms)"]
        gain = d[x][f"batching speed-up at concurrency {top} (ON / OFF req/s)"]
        rows += [(f"p50:{x}", f"{x} p50 (HTTP, c=1)", f"<= {TARGET_P50[x]:.0f} ms", p50, p50 <= TARGET_P50[x]),
                 (f"overhead:{x}", f"{x} overhead over bare ORT", f"<= {TARGET_OVERHEAD_MS:.0f} ms", over,
                  over <= TARGET_OVERHEAD_MS),
                 (f"speedup:{x}", f"{x} batching speed-up, c={top}", f">= {TARGET_SPEEDUP}x", gain,
                  gain >= TARGET_SPEEDUP)]
    return rows


def breakdown(stages: dict[str, float]) -> str:
    batch = stages.get("batch_size", 1.0)
    return ", ".join(f"{p} {stages.get(p, 0.0):.1f}" for p in (*STAGES, "hop", "http")) + f" ms (batch {batch:.0f})"


def analysis(r: Results, key: str, measured: float) -> str:
    """A short paragraph for a missed target, from the measured stage breakdown."""
    kind, route = key.split(":")
    one, ip, model = r["on"][route][1], r["in_process"], MODEL_OF[route]
    bare, pipe, st = ip["bare"][model]["p50"], ip["pipeline"][model]["p50"], one["stages"]
    if kind in ("p50", "overhead"):
        local, hop, http = sum(st.get(k, 0.0) for k in STAGES if k != "predict"), st.get("hop", 0.0), st["http"]
        lead = (f"The model alone (bare ORT) takes {bare:.1f} ms of {TARGET_P50[route]:.0f} ms" if kind == "p50" else
                f"The overhead is {local:.1f} ms decode/pre/postprocessing (left out of the bare call), {hop:.1f} ms "
                f"api -> model service hop and {http:.1f} ms HTTP/client; the model alone takes {bare:.1f} ms")
        return (f"**{route}, {kind}** (measured {measured:.1f} ms). HTTP p50 {one['p50']:.1f} ms; medians: "
                f"{breakdown(st)}. {lead}; predict inside the service {st.get('predict', 0.0):.1f} ms, in-process "
                f"pipeline {pipe:.1f} ms. With batching off: {r['off'][route][1]['p50']:.1f} ms at concurrency 1.")
    on, off = r["on"][route][top := max(r["on"][route])], r["off"][route][top]
    b1, b16 = ip["bare"][model]["p50"], ip["bare_batch16"][model]["p50"] / 16
    ceiling = (f"one {model} ORT call over 16 images costs {b16:.1f} ms per image against {b1:.1f} ms at batch 1, so "
               f"batching can gain at most {b1 / b16:.2f}x in model time")
    return (f"**{route}, batching** (measured {measured:.2f}x). Concurrency {top}: ON {on['throughput']:.1f} req/s "
            f"(mean batch {on['mean_batch']:.1f}; {breakdown(on['stages'])}) vs OFF {off['throughput']:.1f} req/s "
            f"({breakdown(off['stages'])}). On this CPU {ceiling}.")


def http_tables(r: Results) -> tuple[str, str, str]:
    """Concurrency 1, throughput and stage-breakdown tables."""
    runs = [(k, c, m, r[m][k][c]) for k in MODEL_OF for c in r["on"][k] for m in ("on", "off")] + [
        ("search", 1, "on", r["search"])]
    cols = (*STAGES, "hop", "http", "total", "batch_size")
    return (table(["route", "batching", "ok", "p50 ms", "p99 ms", "mean ms"],
                  [[k, m, v["ok"], v["p50"], v["p99"], v["mean"]] for k, c, m, v in runs if c == 1]),
            table(["route", "concurrency", "batching", "ok", "other statuses", "req/s", "p50 ms", "p99 ms",
                   "mean batch"], [[k, c, m, v["ok"], {s: n for s, n in v["statuses"].items() if s != "200"} or "-",
                                    v["throughput"], v["p50"], v["p99"], v["mean_batch"]]
                                   for k, c, m, v in runs if c > 1]),
            table(["route", "scenario", *STAGES, "hop", "http", "server total", "batch"],
                  [[k, f"c={c}, {m}", *(v["stages"].get(s, float("nan")) for s in cols)] for k, c, m, v in runs]))


def render(r: Results) -> str:
    ip, rows, (one, loaded, stages) = r["in_process"], targets(r), http_tables(r)
    logs = "; ".join(f"{k}: " + ", ".join(f"{n}x `{s}`" for s, n in v.items() if n)
                     for k, v in r["server_logs"].items() if any(v.values())) or "none"
    sections = [
        ("Machine", table(["fact", "value"], [[k, v] for k, v in r["machine"].items()])
         + "\n\nCPU used by processes outside this benchmark while it ran (other sessions share these cores):\n\n"
         + table(["phase", "wall s", "CPU s of other processes", "other cores busy"],
                 [[k, v["wall_s"], v["other_cpu_s"], f"{v['other_cores']:.2f}"] for k, v in r["load"].items()])),
        ("Method", METHOD),
        ("1. In process, batch 1", table(
            ["model", "input", "precision", "bare ORT p50 ms", "bare p99 ms", "pipeline p50 ms", "pipeline p99 ms",
             "calls"], [[k, ip["bare"][k]["input"], ip["bare"][k]["precision"], ip["bare"][k]["p50"],
                         ip["bare"][k]["p99"], ip["pipeline"][k]["p50"], ip["pipeline"][k]["p99"], ip["bare"][k]["n"]]
                        for k in MODEL_OF.values()])
         + "\n\n" + "; ".join(f"{k} bare ORT at batch 16: p50 {b['p50']:.1f} ms per call, {b['p50'] / 16:.1f} ms "
                                f"per image" for k, b in ip["bare_batch16"].items()) + "."),
        ("2. HTTP at concurrency 1", one), ("3. Throughput", loaded),
        ("4. Derived", table(["route", "metric", "value"],
                             [[x, k, f"{v:.2f}x" if "speed-up" in k else v] for x, vals in derived(r).items()
                              for k, v in vals.items()])),
        ("5. Where the time goes (medians of the responses' `timings_ms`)", STAGE_NOTE + "\n\n" + stages),
        ("6. Targets", table(["target", "goal", "measured", "met"],
                             [[t, g, f"{v:.2f}", "met" if ok else "NOT met"] for _, t, g, v, ok in rows])
         + "\n\n### Missed targets\n\n"
         + ("\n\n".join(analysis(r, key, v) for key, _, _, v, ok in rows if not ok) or "None.")),
        *sweep_section(r),
        ("Notes", NOTES.format(issues=", ".join(f"`{p}`" for p in LOG_ISSUES), logs=logs)),
    ]
    head = f"# Serving benchmark\n\nGenerated by `benchmarks/serving.py` on {r['machine']['date']}.\n\n"
    return head + "\n\n".join(f"## {title}\n\n{body}" for title, body in sections) + "\n"


def sweep_section(r: Results) -> list[tuple[str, str]]:
    rows = [[n, v["ok"], v["throughput"], v["p50"], v["p99"], v["mean_batch"]] for n, v in sorted(r["sweep"].items())]
    return [("7. CV_MAX_BATCH_SIZE sweep (classify, batching on, highest concurrency)",
             table(["max_batch_size", "ok", "req/s", "p50 ms", "p99 ms", "mean batch"], rows)
             + f"\n\nHighest throughput: max_batch_size={max(rows, key=lambda row: row[2])[0]}. 16 is the run of "
             "section 3, the others fresh servers; a few percent is within run-to-run noise here.")] if rows else []


METHOD = """- **Bare ORT**: `session.run` alone on the session `OrtRunner` builds from the model-store file of the
  newest classifier / detector version, in the precision serving picks (intra-op threads 2, inter-op 1,
  `ORT_ENABLE_ALL`, same providers); input: the
  real photo, preprocessed once; 10 warm-up calls, then timed calls at batch 1.
- **Pipeline**: `ModelWorker(build_pool(name, settings)).run([item])` on the decoded photo, in this process.
- **HTTP**: `bentoml serve services.api:Api` on loopback (`tests/integration/server.py`), a Tiny-ImageNet val gallery
  in a temp `CV_DATA_DIR`; scikit-image `chelsea` (classify, search) and `astronaut` (detect) as JPEG (quality 90).
  Latency = client wall time of a multipart POST (async httpx, keep-alive). Throughput: a fixed number of requests
  from `c` workers after a warm-up burst at that concurrency; req/s = successful answers / wall time; p50/p99 over
  successful answers. Then the same on a fresh server with `CV_BATCHING_ENABLED=false`."""

STAGE_NOTE = """`decode`, `preprocess`, `postprocess` are per image; `predict` is one ORT run for the whole batch
(`batch` = its size); `hop` = server total - those four stages (api -> model service transport of the decoded
pixels, pickling, the batching queue; for search also the gallery lookup); `http` = client latency - server total
(client, uvicorn, multipart parsing, JSON)."""

NOTES = """- The mirror's YOLOX-Nano file fixes the batch at 1; the import rewrites the axis as dynamic
  (training/yolox_batch.py, outputs identical), so a detector batch is one ORT call.
- The load generator runs on the same 2 cores as the server and competes with it for CPU, so absolute throughput
  is a lower bound; ON and OFF are measured under the same handicap.
- Server log lines matching {issues}: {logs}."""


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
