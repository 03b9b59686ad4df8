"""Memory benchmark: resident memory of every process of `make serve` and of the native production topology.

One run: a gallery build (its peak), then `bentoml serve services.api:Api` with its embedded job worker (idle,
mixed load at concurrency 16, batch jobs), then the production topology (deploy/: Traefik, auth, two api
replicas, the model services, Celery worker and beat, Prometheus/Alertmanager when installed) through its edge
(idle, load, jobs), then a soak through the edge at 70 % of the load phase's throughput. A background thread samples
RSS, PSS and USS of every process every second (benchmarks/memory_sampler.py).

Writes benchmarks/reports/memory.md, memory.json and memory_soak.png. ``python benchmarks/memory.py [--quick]
[--soak-minutes M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import memory_load as traffic  # noqa: E402
from benchmarks.common import machine_facts, photos, write_report  # noqa: E402
from benchmarks.memory_report import plot_soak, render  # noqa: E402
from benchmarks.memory_sampler import Sampler, growth, summarise  # noqa: E402

log = logging.getLogger("benchmarks.memory")
REPORTS = REPO / "benchmarks" / "reports"


def _sampled(sampler: Sampler) -> dict[str, Any]:
    return {"phases": summarise(sampler.samples, sampler.phases), "torch": sampler.torch}


def gallery_build(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """`python -m services.index.build_gallery --tiny-imagenet-val --limit N`, sampled while it runs."""
    command = [
        sys.executable,
        "-m",
        "services.index.build_gallery",
        "--tiny-imagenet-val",
        "--limit",
        str(args.gallery),
    ]
    env = {**os.environ, "CV_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = Sampler({"build_gallery": process.pid}, interval_s=0.5).start()
    started = time.monotonic()
    with sampler.phase(f"gallery build ({args.gallery} images)"):
        _, stderr = process.communicate()
    sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"build_gallery failed:\n{stderr.decode(errors='replace')[-2000:]}")
    return {**_sampled(sampler), "seconds": time.monotonic() - started}


def exercise(sampler: Sampler, args: argparse.Namespace, base: str, headers: dict[str, str], jpegs: Any) -> Any:
    """The phases both deployments go through: idle, mixed load, batch jobs, idle again."""
    out: dict[str, Any] = {}
    with sampler.phase("idle after start"):
        time.sleep(args.idle_s)
    with sampler.phase("load (c=16 mixed)"):
        out["load"] = asyncio.run(traffic.mixed(base, headers, jpegs, args.load_s, 16, None))
    log.info("load: %.1f req/s, %d errors", out["load"]["throughput"], out["load"]["error_count"])
    with sampler.phase(f"batch jobs ({args.jobs} x {args.job_images} images)"):
        out["jobs"] = asyncio.run(traffic.jobs(base, headers, jpegs, args.jobs, args.job_images))
    log.info("jobs: %s, %d errors", out["jobs"]["jobs"], out["jobs"]["error_count"])
    with sampler.phase("idle after load"):
        time.sleep(args.idle_s)
    return out


def make_serve(args: argparse.Namespace, workdir: Path, jpegs: Any) -> dict[str, Any]:
    """`bentoml serve services.api:Api` in local mode with its embedded job worker."""
    from tests.integration.server import start_server

    env: dict[str, str | None] = {
        "CV_DATA_DIR": str(workdir / "serve-data"),
        "CV_JOBS_EMBEDDED_WORKER": "true",
        "CV_MODELS_IN_PROCESS": None,  # as `make serve` runs: the models in the api process (ADR 0014)
        "BENTOML_HOME": os.environ["BENTOML_HOME"],
    }
    server = start_server(workdir / "serve.log", env, timeout=240)
    sampler = Sampler({"": server.process.pid}).start()
    try:
        time.sleep(5)  # the embedded worker starts after the health check
        out = exercise(sampler, args, server.url, {}, jpegs)
    finally:
        sampler.stop()
        server.stop()
    return {**out, **_sampled(sampler)}


def _key(topology: Any) -> str:
    env = {**os.environ, **topology.plan.gateway_env}
    command = [sys.executable, "-m", "gateway", "keys", "create", "--tier", "enterprise", "--name", "memory"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


def production(args: argparse.Namespace, workdir: Path, jpegs: Any) -> dict[str, Any]:
    """The native topology through its edge: the phases, then the soak."""
    from deploy.runner import Topology
    from deploy.topology import TopologyConfig, monitoring_binaries, plan
    from tests.integration.conftest import REDIS_URL, fresh_schema, postgres_url, redis_keys

    namespace = f"mem{uuid.uuid4().hex[:8]}"
    run_dir = workdir / "topology"
    (run_dir / "data").mkdir(parents=True)
    shutil.copy(workdir / "serve-data" / "gallery.sqlite3", run_dir / "data" / "gallery.sqlite3")
    with fresh_schema() as schema, redis_keys(f"{namespace}:"):
        config = TopologyConfig(
            run_dir=run_dir,
            database_url=postgres_url(int(os.environ.get("PGPORT", "5432")), schema),
            redis_url=REDIS_URL,
            bentoml_home=Path(os.environ["BENTOML_HOME"]),
            key_hash_secret=secrets.token_urlsafe(32),
            namespace=namespace,
            monitoring=monitoring_binaries() is not None,
            # Every request reaches a model; the drift check runs in the warm-up and then again and again.
            extra_env={"CV_CACHE_ENABLED": "false", "CV_DRIFT_INTERVAL_S": str(args.drift_interval_s)},
        )
        with Topology(config, plan(config)) as topology:
            headers = {"Authorization": f"Bearer {_key(topology)}"}
            roots = {name: run.process.pid for name, run in topology.running.items()}
            sampler = Sampler(roots).start()
            try:
                out = exercise(sampler, args, topology.plan.edge_url, headers, jpegs)
                prometheus = topology.plan.prometheus_url
                before, names = prometheus_head(prometheus), series_by_name(prometheus)
                out["soak"] = run_soak(sampler, args, topology.plan.edge_url, headers, jpegs, out["load"]["throughput"])
                out["soak"]["prometheus_head"] = {"start": before, "end": prometheus_head(prometheus)}
                out["soak"]["prometheus_series"] = {"start": names, "end": series_by_name(prometheus)}
            finally:
                sampler.stop()
            out["processes"] = sorted(roots)
    return {**out, **_sampled(sampler), "soak_series": sampler.samples}


# What Prometheus holds in memory: the TSDB head (every series' samples since the last 2-hour block was cut) and
# the Go heap it lives in. Its own /metrics, read directly (no scrape of itself needed).
PROMETHEUS_HEAD = ("prometheus_tsdb_head_series", "prometheus_tsdb_head_chunks", "go_memstats_heap_inuse_bytes")


def prometheus_head(url: str | None) -> dict[str, float] | None:
    """Prometheus's head series, head chunks and Go heap in use now (None without Prometheus)."""
    if url is None:
        return None
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in PROMETHEUS_HEAD:
            values[name] = float(value)
    return values


def series_by_name(url: str | None) -> dict[str, int] | None:
    """How many series Prometheus holds of each metric name now (None without Prometheus)."""
    if url is None:
        return None
    import httpx

    query = 'count by (__name__) ({__name__=~".+"})'
    answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=30).json()
    return {row["metric"]["__name__"]: int(float(row["value"][1])) for row in answer["data"]["result"]}


def run_soak(
    sampler: Sampler, args: argparse.Namespace, base: str, headers: dict[str, str], jpegs: Any, peak: float
) -> dict[str, Any]:
    """``args.soak_minutes`` at 70 % of ``peak`` req/s; growth per process after ``args.warmup_minutes``."""
    rate, seconds = 0.7 * peak, args.soak_minutes * 60
    log.info("soak: %.0f min at %.1f req/s (70 %% of %.1f)", args.soak_minutes, rate, peak)
    t0 = sampler.now()
    with sampler.phase("soak"):
        result = asyncio.run(traffic.soak(base, headers, jpegs, seconds, rate, args.job_every_s))
    t1 = sampler.now()
    warm = t0 + min(args.warmup_minutes * 60, seconds / 3)
    return {
        **result,
        "rate": rate,
        "peak": peak,
        "t0": t0,
        "t1": t1,
        "warmup_s": warm - t0,
        "growth": growth(sampler.samples, warm, t1, window_s=min(60.0, (t1 - warm) / 3)),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--soak-minutes", type=float, default=20.0)
    add("--warmup-minutes", type=float, default=3.0, help="left out of the soak's growth")
    add("--gallery", type=int, default=2000, help="images in the gallery build")
    add("--quick", action="store_true", help="a smoke run: short phases, a 1-minute soak")
    add("--skip-serve", action="store_true", help="the production topology only")
    # The shipped 900 s would run the worker's drift check once or twice in a soak, its first time after the warm-up.
    add("--drift-interval-s", type=float, default=120.0, help="CV_DRIFT_INTERVAL_S of the topology's Celery beat")
    add("--out", type=Path, default=REPORTS / "memory.md", help="report (.json and _soak.png beside it)")
    add("--logs", type=Path, default=Path(tempfile.gettempdir()) / "cv-memory-logs", help="where the logs are kept")
    add("--raw", type=Path, default=Path(tempfile.gettempdir()) / "cv-memory-results.pickle", help="raw results")
    add("--render", type=Path, help="only write the report from a --raw file of an earlier run")
    parser.set_defaults(idle_s=30.0, load_s=60.0, jobs=4, job_images=16, job_every_s=60.0)
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(idle_s=5.0, load_s=10.0, jobs=2, gallery=100, soak_minutes=min(args.soak_minutes, 1.0))
        args.job_every_s = 20.0
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.render:
        write(pickle.loads(args.render.read_bytes()), args.out)
        return 0
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    started, jpegs = time.monotonic(), photos()
    results: dict[str, Any] = {"machine": machine_facts(), "plan": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="cv-memory-") as tmp:
        workdir = Path(tmp)
        log.info("gallery build: %d images", args.gallery)
        results["gallery"] = gallery_build(args, workdir / "serve-data")
        if not args.skip_serve:
            log.info("make serve")
            results["serve"] = make_serve(args, workdir, jpegs)
        log.info("production topology")
        try:
            results["production"] = production(args, workdir, jpegs)
        finally:
            keep_logs(workdir, args.logs)
    results["machine"]["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    args.raw.write_bytes(pickle.dumps(results))  # to render again (--render) should the report fail
    write(results, args.out)
    return 0


def keep_logs(workdir: Path, into: Path) -> None:
    """Copy every process's log (the api, the topology's services, Traefik) out of the run's temporary folder."""
    if into.exists():
        shutil.rmtree(into)
    for path in workdir.rglob("*.log"):
        target = into / path.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    log.info("logs kept in %s", into)


def write(results: dict[str, Any], out: Path) -> None:
    """memory.md, memory.json and memory_soak.png (``out``'s stem in each name)."""
    samples = results["production"].pop("soak_series")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_name(out.stem + "_soak.png")
    plot_soak(samples, results["production"]["soak"], plot)
    write_report(out, render(results, plot.name), results)


if __name__ == "__main__":
    raise SystemExit(main())
