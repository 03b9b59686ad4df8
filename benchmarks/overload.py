"""Overload benchmark: admission control at concurrency 16, 32 and 256, and adaptive batching on vs off, in one run.

Each server is `bentoml serve services.api:Api` on loopback with the result cache off (tests/integration/server.py);
every phase is a fixed wall time of closed-loop clients posting the chelsea JPEG to /api/v1/classify. A client that
is refused (503) waits the ``Retry-After`` it is sent, as the SDK does, then sends again. Writes
benchmarks/reports/overload.md and overload.json beside it; see --help.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/overload.py` must find services/ and tests/

from benchmarks.common import machine_facts, photos, write_report  # noqa: E402
from benchmarks.overload_report import render  # noqa: E402
from tests.integration.server import Server, start_server  # noqa: E402

log = logging.getLogger("benchmarks.overload")
PATH = "/api/v1/classify"
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_COUNTER = re.compile(r"^(cv_http_requests_total|cv_admission_refused_total)\{([^}]*)\} ([0-9.e+]+)$", re.M)


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    a = np.asarray(samples)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def _form(jpeg: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", jpeg, filename="c.jpg", content_type="image/jpeg")
    form.add_field("top_k", "5")
    return form


async def _phase(
    url: str,
    jpeg: bytes,
    concurrency: int,
    seconds: float,
    honour_retry_after: bool,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``: answered and refused latencies, statuses, refusal checks.

    A 429 (the gateway's tier limit, through the edge) is counted apart from the api's 503 refusals; its client waits
    the ``Retry-After`` it is sent in the same way. aiohttp rather than httpx: at 256 connections httpx's pool cost the
    client more CPU than the server used.
    """
    answered: list[float] = []
    refused: list[float] = []
    limited: list[float] = []
    statuses: Counter[str] = Counter()
    malformed: Counter[str] = Counter()  # 503s without problem+json or Retry-After
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout, headers=headers) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with client.post(PATH, data=_form(jpeg)) as r:
                        await r.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latency = (time.perf_counter() - t0) * 1000
                problem = r.headers.get("x-problem-type")
                statuses[f"{r.status} {problem}" if problem else str(r.status)] += 1
                if r.status == 200:
                    answered.append(latency)
                elif problem == "overloaded" or r.status == 429:
                    (refused if r.status == 503 else limited).append(latency)
                    if r.headers.get("content-type") != "application/problem+json":
                        malformed["content-type"] += 1
                    if "retry-after" not in r.headers:
                        malformed["retry-after"] += 1
                    if honour_retry_after:
                        wait = float(r.headers.get("retry-after", "1"))
                        await asyncio.sleep(min(wait, max(0.0, deadline - time.perf_counter())))
                else:
                    log.warning("answered %d", r.status)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "answered_ms": answered,
        "refused_ms": refused,
        "limited_ms": limited,
        "statuses": statuses,
        "malformed_refusals": malformed,
    }


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One concurrency's rounds as one phase: totals over the summed wall time, percentiles over all samples."""
    answered = [ms for r in rounds for ms in r["answered_ms"]]
    refused = [ms for r in rounds for ms in r["refused_ms"]]
    limited = [ms for r in rounds for ms in r.get("limited_ms", [])]
    wall = sum(r["seconds"] for r in rounds)
    return {
        "concurrency": rounds[0]["concurrency"],
        "seconds": wall,
        "rounds": len(rounds),
        "answered": len(answered),
        "throughput": len(answered) / wall,
        "throughput_by_round": [len(r["answered_ms"]) / r["seconds"] for r in rounds],
        "latency_ms": _percentiles(answered),
        "refused": len(refused),
        "refusal_ms": _percentiles(refused),
        "limited": len(limited),
        "limited_ms": _percentiles(limited),
        "statuses": dict(sum((r["statuses"] for r in rounds), Counter())),
        "malformed_refusals": dict(sum((r["malformed_refusals"] for r in rounds), Counter())),
    }


def _server_counts(url: str) -> dict[str, float]:
    """The server's own counts of classify answers by status and of admission refusals (its /metrics)."""
    text = httpx.get(f"{url}/api/v1/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for name, labels, value in _COUNTER.findall(text):
        found = dict(_LABEL.findall(labels))
        if found.get("route") != PATH:
            continue
        key = f"status {found.get('status')}" if name == "cv_http_requests_total" else f"refused {found.get('reason')}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return dict(counts)


def _server_times(log_path: Path, offset: int) -> dict[str, list[float]]:
    """Server-side durations of the classify answers logged after ``offset`` (the access log), by status."""
    by_status: dict[str, list[float]] = {}
    with log_path.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            with suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == "request" and record.get("route") == PATH:
                    by_status.setdefault(str(record["status"]), []).append(float(record["duration_ms"]))
    return by_status


def _cpu_s(process: psutil.Process) -> float:
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        with suppress(psutil.Error):
            total += sum(proc.cpu_times()[:2])
    return total


class Tally:
    """What one server's phases at one concurrency measured, over the rounds."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.server_ms: dict[str, list[float]] = {}
        self.cpu: list[float] = []

    def measure(
        self,
        url: str,
        jpeg: bytes,
        concurrency: int,
        seconds: float,
        honour_retry_after: bool,
        *,
        replicas: Sequence[tuple[str, Path]],
        processes: Sequence[psutil.Process],
        headers: dict[str, str] | None = None,
    ) -> None:
        """One phase against ``url``: client figures, the CPU of ``processes``, and the counts (their /metrics) and
        logged durations (their access logs) of the api ``replicas`` (url, log path) behind it, summed."""
        offsets = [log_path.stat().st_size for _, log_path in replicas]
        before, cpu0 = [_server_counts(api) for api, _ in replicas], sum(_cpu_s(p) for p in processes)
        result = asyncio.run(_phase(url, jpeg, concurrency, seconds, honour_retry_after, headers))
        self.cpu.append((sum(_cpu_s(p) for p in processes) - cpu0) / result["seconds"])
        for (api, log_path), earlier, offset in zip(replicas, before, offsets, strict=True):
            after = _server_counts(api)
            self.counts.update({k: after.get(k, 0.0) - earlier.get(k, 0.0) for k in after})
            for status, samples in _server_times(log_path, offset).items():
                self.server_ms.setdefault(status, []).extend(samples)
        self.rounds.append(result)

    def summary(self) -> dict[str, Any]:
        phase = _merge(self.rounds)
        phase["server_cpu_cores"] = float(np.mean(self.cpu))
        phase["server_counts"] = dict(self.counts)
        phase["server_ms"] = {status: _percentiles(samples) for status, samples in self.server_ms.items()}
        return phase


def run(plan: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """All servers up at once; each round runs every server's phases in turn, so the machine's other load weighs
    on each alike (other helpers share the CPUs): the ratios within a round are what counts."""
    jpeg = photos()["chelsea"]
    results: dict[str, Any] = {"machine": machine_facts(), "plan": {k: str(v) for k, v in vars(plan).items()}}
    # None unsets (tests/integration/server.py): the models in the api process, as `make serve` runs them.
    placement = {"in-process": None, "services": "false"}[plan.models]
    base = {"CV_CACHE_ENABLED": "false", "BENTOML_HOME": os.environ["BENTOML_HOME"], "CV_MODELS_IN_PROCESS": placement}
    configs = {
        "admission on": ({}, plan.concurrencies),
        "admission off": ({"CV_ADMISSION_ENABLED": "false"}, plan.concurrencies),
        "batching off": ({"CV_ADMISSION_ENABLED": "false", "CV_BATCHING_ENABLED": "false"}, [16, 32]),
    }
    configs = {label: config for label, config in configs.items() if label in plan.servers}
    servers: dict[str, Server] = {}
    try:
        for i, (label, (env, _)) in enumerate(configs.items()):
            log.info("starting server %s", label)
            port = plan.port + i if plan.port else None
            servers[label] = start_server(
                workdir / f"server-{i}.log", {**base, **env, "CV_DATA_DIR": str(workdir / f"data-{i}")}, 240, port=port
            )
        for server in servers.values():
            asyncio.run(_phase(server.url, jpeg, 16, plan.warmup, True))
        tallies = {(label, c): Tally() for label, (_, cs) in configs.items() for c in cs}
        for r in range(plan.rounds):
            for (label, c), tally in tallies.items():
                server = servers[label]
                tally.measure(
                    server.url,
                    jpeg,
                    c,
                    plan.seconds,
                    not plan.ignore_retry_after,
                    replicas=[(server.url, server.log_path)],
                    processes=[psutil.Process(server.process.pid)],
                )
                log.info(
                    "round %d %s c=%d: %.1f req/s",
                    r,
                    label,
                    c,
                    tally.rounds[-1]["answered_ms"].__len__() / plan.seconds,
                )
    finally:
        for server in servers.values():
            server.stop()
    for label, (_, cs) in configs.items():
        results[label] = {c: tallies[(label, c)].summary() for c in cs}
        results[label]["server_error_lines"] = servers[label].log().count('"level": "ERROR"')
    return results


def add_phase_options(parser: argparse.ArgumentParser) -> None:
    """The phases' options, shared with benchmarks/overload_edge.py."""
    add = parser.add_argument
    add("--seconds", type=float, default=8.0, help="wall time of each phase")
    add("--rounds", type=int, default=2, help="rounds of the phases, interleaved")
    add("--warmup", type=float, default=8.0, help="seconds at concurrency 16 before the phases")
    add("--concurrencies", type=int, nargs="+", default=[16, 32, 256])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add_phase_options(parser)
    add("--servers", nargs="+", default=["admission on", "admission off", "batching off"])
    add(
        "--models",
        choices=["in-process", "services"],
        default="in-process",
        help="where the models run: in the api process (`make serve`'s default) or in their own services",
    )
    add("--ignore-retry-after", action="store_true", help="refused clients send again at once")
    add("--port", type=int, default=None, help="the servers' port (default: a free one)")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "overload.md", help="report (.json beside it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = parse_args(argv)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cv-overload-") as tmp:
        results = run(plan, Path(tmp))
    results["machine"]["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    write_report(plan.out, render(results), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
