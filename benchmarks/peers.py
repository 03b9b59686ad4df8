"""The product against the peers a user could write themselves, on loopback, one load generator, one run.

Starts ``bentoml serve services.api:Api`` as shipped (result cache off, inference logging, metrics, request ids and
validation on; adaptive batching on, then off) and each hand-written peer of benchmarks/peers/ in turn, and sends each
the same photo: a warm-up, then requests at concurrency 1 and at each load concurrency, over keep-alive connections.
Records latency percentiles, throughput and the CPU seconds of each server's process tree (and of this load generator).
Then ``--rounds`` - 1 more rounds of the servers the goals compare (the product, batching on and off, and the FastAPI +
ONNX Runtime peers), started once, side by side, each route and concurrency measured on all back to back, alternating
which side starts: the two sides of a ratio are seconds apart, not minutes, so a shared VM's drift in speed mostly
cancels. The goals and the batching gain are judged on the median of the rounds' ratios.
Writes benchmarks/reports/peers.md, .json and .png (benchmarks/peers_report.py); the servers and how each starts:
benchmarks/peers_servers.py; see --help.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/peers.py` must find services/ and deploy/

from benchmarks.common import machine_facts, photos, stats  # noqa: E402
from benchmarks.loopback import Target, launch, machine_busy_seconds, settle, tree_cpu_seconds  # noqa: E402
from benchmarks.peers_report import write_report  # noqa: E402
from benchmarks.peers_servers import goal_servers, start_timeout, targets  # noqa: E402
from deploy.topology import free_port  # noqa: E402

log = logging.getLogger("benchmarks.peers")
Results = dict[str, Any]
FIELDS: dict[str, dict[str, str]] = {"classify": {"top_k": "5"}, "detect": {}}
DETECT_SIZE = (810, 1080)  # ultralytics' bus.jpg, the photo the issue timed detection on


async def _load(
    url: str, path: str, fields: dict[str, str], jpeg: bytes, concurrency: int, total: int
) -> tuple[list[float], Counter[str], float, Any]:
    """``total`` POSTs from ``concurrency`` workers over keep-alive connections: latencies (ms), statuses, seconds."""
    todo, statuses, latencies, first = iter(range(total)), Counter[str](), list[float](), list[Any]()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            for _ in todo:
                started = time.perf_counter()
                try:
                    response = await client.post(path, files={"image": ("photo.jpg", jpeg, "image/jpeg")}, data=fields)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                    if not first:
                        first.append(response.json())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - started, first[0] if first else None


def summary(route: str, body: Any) -> str:
    """What a server answered, short: the top label (classify) or the number of detections and the best class."""
    if not isinstance(body, dict):
        return "no answer"
    if route == "classify":
        best = (body.get("predictions") or [{}])[0]
        return f"{best.get('label', best.get('class_id'))} ({best.get('score', 0.0):.2f})"
    detections = body.get("detections") or []
    return f"{len(detections)} boxes" + (f", best class {detections[0].get('class_id')}" if detections else "")


def measure(
    url: str, root: psutil.Process, route: str, path: str, jpeg: bytes, c: int, plan: argparse.Namespace
) -> Results:
    """A warm-up at concurrency ``c``, then the measured requests; latency, throughput and CPU of both sides."""
    fields, total = FIELDS[route], plan.sequential if c == 1 else plan.requests
    asyncio.run(_load(url, path, fields, jpeg, c, plan.warmup))
    me = psutil.Process()
    server0, client0, busy0 = tree_cpu_seconds(root), sum(me.cpu_times()[:2]), machine_busy_seconds()
    latencies, statuses, seconds, body = asyncio.run(_load(url, path, fields, jpeg, c, total))
    server_cpu, client_cpu = tree_cpu_seconds(root) - server0, sum(me.cpu_times()[:2]) - client0
    other_cpu = max(0.0, machine_busy_seconds() - busy0 - server_cpu - client_cpu)
    ok = len(latencies)
    result = {
        **stats(latencies),
        "statuses": dict(statuses),
        "seconds": seconds,
        "throughput": ok / seconds,
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(ok, 1),
        "server_cores": server_cpu / seconds,
        "client_cpu_s": client_cpu,
        "other_cores": other_cpu / seconds,  # what the rest of the machine (other work) used meanwhile
        "answer": summary(route, body),
    }
    log.info("  %s c=%d: p50 %.1f ms, p99 %.1f ms, %.1f req/s, server %.2f cores, %s", route, c, result["p50"],
             result["p99"], result["throughput"], result["server_cores"], statuses)  # fmt: skip
    return result


def _started(target: Target, url: str, root: psutil.Process) -> tuple[str, psutil.Process, float]:
    settled = settle(root)
    log.info("  %s settled %.1f s after its health route answered", target.name, settled)
    return url, root, settled


def measure_target(
    target: Target, up: tuple[str, psutil.Process, float], jpegs: dict[str, bytes], plan: argparse.Namespace
) -> Results:
    """Every route of a running ``target`` at each of its concurrencies; ``up``: its URL, process and settling time."""
    url, root, settled = up
    result = _result(target, settled)
    for route, path in target.routes.items():
        result["routes"][route] = {
            str(c): measure(url, root, route, path, jpegs[route], c, plan) for c in _levels(target)
        }
    return result


def _result(target: Target, settled: float) -> Results:
    """A server's results before its routes are measured."""
    return {"label": target.label, "routes": {}, "settled_after_s": round(settled, 1)}


def _levels(target: Target) -> tuple[int, ...]:
    """The concurrencies ``target`` is measured at: 1 (unless skipped), then its load concurrencies."""
    return target.concurrencies if target.skip_sequential else (1, *target.concurrencies)


def run_target(target: Target, jpegs: dict[str, bytes], plan: argparse.Namespace, workdir: Path, port: int) -> Results:
    log.info("%s: starting (%s)", target.name, target.label)
    with launch(target, workdir, port, start_timeout(target)) as (url, root):
        return measure_target(target, _started(target, url, root), jpegs, plan)


def detect_photo(path: Path | None) -> bytes:
    """The detection photo: the file given, else scikit-image's astronaut stretched to bus.jpg's 810x1080."""
    if path is not None:
        return path.read_bytes()
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize(DETECT_SIZE, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bare(plan: argparse.Namespace, jpegs: dict[str, bytes]) -> Results:
    """session.run alone, in this process, batch 1: the floor under every server."""
    import numpy as np

    from benchmarks.serving import bare_ort

    out = {}
    for model, route in (("classifier", "classify"), ("detector", "detect")):
        image = np.asarray(Image.open(io.BytesIO(jpegs[route])).convert("RGB"))
        out[route] = bare_ort(model, image, plan.bare_calls)
    return out


def side_by_side(plan: argparse.Namespace, workdir: Path, jpegs: dict[str, bytes]) -> list[Results]:
    """Rounds 2 to ``--rounds``: the goals' servers (:func:`goal_servers`) started once, side by side, and in each
    round every route and concurrency measured on each of them back to back, the order reversed in even rounds so
    neither side always runs first.

    A server waits idle while another is measured (the product's tree: ~0.01 cores, its embedded job worker polling;
    each measurement's ``other_cores`` shows it). Started in turn, the two sides of a round's ratio were a minute or
    more apart, and a shared VM's cores drift in speed: on one VM the product's CPU per classify answer moved from 6.2
    to 8.2 ms and back within two minutes, in batches of 4 throughout, and three such rounds' median ratio read 1.05
    in one run and 1.46 in the next (TECHNICAL.md). Back to back, a ratio's two sides are seconds apart.
    """
    chosen = goal_servers(plan, workdir)
    repeats: list[Results] = []
    with ExitStack() as stack:
        up = {}
        for offset, target in enumerate(chosen):
            log.info("%s: starting beside the others (%s)", target.name, target.label)
            port = plan.port + offset if plan.port else free_port()
            url, root = stack.enter_context(launch(target, workdir, port, start_timeout(target)))
            up[target.name] = _started(target, url, root)
        for round_number in range(2, plan.rounds + 1):
            log.info("round %d of %d: the goals' servers again, side by side", round_number, plan.rounds)
            order = chosen[::-1] if round_number % 2 == 0 else chosen
            measured: Results = {t.name: _result(t, up[t.name][2]) for t in order}
            for route in dict.fromkeys(route for t in order for route in t.routes):
                serving = [t for t in order if route in t.routes]
                for c in sorted({c for t in serving for c in _levels(t)}):
                    for t in (t for t in serving if c in _levels(t)):
                        url, root, _ = up[t.name]
                        at = measure(url, root, route, t.routes[route], jpegs[route], c, plan)
                        measured[t.name]["routes"].setdefault(route, {})[str(c)] = at
            repeats.append(measured)
    return repeats


def run_in_turn(chosen: list[Target], jpegs: dict[str, bytes], plan: argparse.Namespace, workdir: Path) -> Results:
    """Each of ``chosen`` started, measured and stopped in turn: its results by server name."""
    measured: Results = {}
    for offset, target in enumerate(chosen):
        port = plan.port + offset if plan.port else free_port()
        measured[target.name] = run_target(target, jpegs, plan, workdir, port)
    return measured


def run(plan: argparse.Namespace, workdir: Path) -> Results:
    jpegs = {"classify": photos()["chelsea"], "detect": detect_photo(plan.detect_image)}
    results: Results = {
        "machine": machine_facts(),
        "plan": {k: str(v) for k, v in vars(plan).items()},
        "photos": {
            route: {"bytes": len(data), "size": list(Image.open(io.BytesIO(data)).size)}
            for route, data in jpegs.items()
        },
        "servers": {},
        "notes": plan.notes,
    }
    results["bare"] = bare(plan, jpegs)
    results["servers"] = run_in_turn(targets(plan, workdir), jpegs, plan, workdir)
    folder = workdir / "side-by-side"
    folder.mkdir()
    results["repeats"] = side_by_side(plan, folder, jpegs) if plan.rounds > 1 else []
    results["repeats_side_by_side"] = True  # how rounds 2.. ran (reports before 2026-12-07 started them in turn)
    return results


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """'spin:CV_ORT_ALLOW_SPINNING=true' -> ('spin', {'CV_ORT_ALLOW_SPINNING': 'true'})."""
    name, _, settings = text.partition(":")
    pairs = [pair.partition("=") for pair in settings.split(",") if pair]
    if not name or any(not key or not sep for key, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"expected NAME:KEY=VALUE[,KEY=VALUE], got {text!r}")
    return name, {key: value for key, _, value in pairs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--requests", type=int, default=600, help="requests per load run")
    add("--sequential", type=int, default=300, help="requests at concurrency 1")
    add("--warmup", type=int, default=30, help="warm-up requests before each measured run")
    add("--concurrencies", type=int, nargs="+", default=[16], help="load concurrencies of every server")
    add("--batching-concurrencies", type=int, nargs="*", default=[16, 32], help="the product's, batching on and off")
    add("--variant", type=_variant, action="append", default=[], help="NAME:KEY=VALUE[,KEY=VALUE]: the product again")
    add("--rounds", type=int, help="rounds of the goals' servers, alternated; goals judge the median ratio (7)")
    add("--only", nargs="*", default=[], help="server names to run (default: all)")
    add("--detect-image", type=Path, default=None, help="JPEG for detect (default: an 810x1080 stand-in)")
    add("--port", type=int, default=0, help="first loopback port, each server the next (default: free ports)")
    add("--note", dest="notes", action="append", default=[], help="a line for the report's notes (repeatable)")
    add("--quick", action="store_true", help="a smoke run: small counts")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "peers.md", help="report (.json, .png beside)")
    parser.set_defaults(bare_calls=200)
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(sequential=10, requests=24, warmup=4, bare_calls=10, batching_concurrencies=[])
    if args.rounds is None:
        args.rounds = 1 if args.quick else 7
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = parse_args(argv)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))  # before anything imports bentoml
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cv-peers-") as tmp:
        results = run(plan, Path(tmp))
    results["machine"]["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    write_report(results, plan.out)
    plan.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    print(plan.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
