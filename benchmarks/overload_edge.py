"""Overload through the edge: the production topology behind Traefik + ForwardAuth at concurrency 16, 32 and 256.

benchmarks/overload.py measures one api process straight; this sends the same closed-loop classify load to Traefik
with an API key, so the gateway's tier limit (429) applies beside the api replicas' admission control (503). The
topology is deploy/'s native one on loopback (two api replicas, the three model services, the auth service, Traefik),
on the machine's PostgreSQL (a fresh schema) and Redis (a fresh key namespace), result cache off, no job worker.
A client refused with 503 or 429 waits the ``Retry-After`` it is sent, as the SDK does. The replicas' own counts
(their /metrics) and access logs are summed, so "nothing admitted lost" is checked across both.

    python benchmarks/overload_edge.py [--tier enterprise] [--seconds 8] [--rounds 2]

Writes benchmarks/reports/overload_edge.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
# Run as a script, benchmarks/ comes first on the path, and benchmarks/gateway.py would shadow the gateway package.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks")]

from benchmarks.common import machine_facts, photos, table, write_report  # noqa: E402
from benchmarks.gateway import edge_topology, key_store  # noqa: E402
from benchmarks.overload import Tally, _phase, add_phase_options  # noqa: E402

log = logging.getLogger("benchmarks.overload_edge")


def measure(args: argparse.Namespace, topology: Any, key: str) -> dict[str, Any]:
    jpeg, headers = photos()["chelsea"], {"Authorization": f"Bearer {key}"}
    asyncio.run(_phase(topology.plan.edge_url, jpeg, 16, args.warmup, True, headers))
    names = [name for name in topology.running if name.startswith("api-")]
    replicas = [(topology.plan.get(name).url, topology.log_dir / f"{name}.log") for name in names]
    processes = [psutil.Process(run.process.pid) for run in topology.running.values()]
    tallies = {c: Tally() for c in args.concurrencies}
    for r in range(args.rounds):
        for c, tally in tallies.items():
            tally.measure(
                topology.plan.edge_url,
                jpeg,
                c,
                args.seconds,
                True,
                replicas=replicas,
                processes=processes,
                headers=headers,
            )
            log.info("round %d c=%d: %.1f req/s", r, c, len(tally.rounds[-1]["answered_ms"]) / args.seconds)
    phases = {c: tally.summary() for c, tally in tallies.items()}
    errors = {name: topology.log(name).count('"level": "ERROR"') for name in topology.running if name != "traefik"}
    return {"phases": phases, "error_lines": errors}


HEADERS = [
    "concurrency",
    "answered req/s",
    "vs c=16",
    "p50 ms",
    "p99 ms",
    "max ms",
    "503 refused",
    "503 p50 / p99 ms",
    "429 limited",
    "429 p50 / p99 ms",
    "other",
    "refusals without problem+json or Retry-After",
    "replicas: 200 / 503",
    "replicas: refusal p99 ms",
    "replicas: answer p99 ms",
    "server CPU cores",
]


def _pair(phase: dict[str, Any], count: str, times: str) -> str:
    return f"{phase[times]['p50']:.0f} / {phase[times]['p99']:.0f}" if phase[count] else "-"


def rows(phases: dict[int, dict[str, Any]]) -> list[list[Any]]:
    base = phases[min(phases)]["throughput"]
    out = []
    for c, phase in phases.items():
        counts, server = phase["server_counts"], phase["server_ms"]
        other = {
            k: v for k, v in phase["statuses"].items() if k not in ("200", "503 overloaded") and not k.startswith("429")
        }
        out.append(
            [
                c,
                phase["throughput"],
                f"{phase['throughput'] / base:.0%}",
                phase["latency_ms"]["p50"],
                phase["latency_ms"]["p99"],
                phase["latency_ms"]["max"],
                phase["refused"],
                _pair(phase, "refused", "refusal_ms"),
                phase["limited"],
                _pair(phase, "limited", "limited_ms"),
                ", ".join(f"{k}: {v}" for k, v in other.items()) or "0",
                sum(phase["malformed_refusals"].values()),
                f"{counts.get('status 200', 0):.0f} / {counts.get('status 503', 0):.0f}",
                server.get("503", {}).get("p99", "-"),
                server.get("200", {}).get("p99", "-"),
                phase["server_cpu_cores"],
            ]
        )
    return out


def render(results: dict[str, Any]) -> str:
    phases = {int(c): p for c, p in results["phases"].items()}
    machine = "\n".join(f"- {k}: {v}" for k, v in results["machine"].items())
    plan = results["plan"]
    answered = {c: p["answered"] for c, p in phases.items()}
    served = {c: p["server_counts"].get("status 200", 0) for c, p in phases.items()}
    return f"""# Overload through the edge

Written by `python benchmarks/overload_edge.py` ({", ".join(f"{k}={v}" for k, v in plan.items())}).

## Method

The production topology of deploy/ on loopback: Traefik with ForwardAuth to the auth service, two api replicas
(admission control on, as shipped), the classifier, detector and embedder services, on this machine's PostgreSQL and
Redis; result cache off, no job worker. A `{plan["tier"]}` key (gateway/tiers.yaml). Each phase is {plan["seconds"]} s
of closed-loop clients posting scikit-image's `chelsea` (451x300) to `POST /api/v1/classify` through Traefik, in
{plan["rounds"]} interleaved rounds after a {plan["warmup"]} s warm-up at concurrency 16. A client refused with 503
(an api replica's admission control) or 429 (the gateway's tier limit) waits the `Retry-After` it is sent, then sends
again. Latencies are the client's; "replicas" columns are the api replicas' own counts (their /metrics) and access-log
times, summed over both; server CPU is every process of the topology. Nothing admitted is lost when the client's 200s
equal the replicas' 200s: {answered} answered against {served} counted by the replicas, by concurrency.

## Machine

{machine}

## Classify through the edge

{table(HEADERS, rows(phases))}

ERROR log lines per process: {results["error_lines"]}
{_notes(results.get("notes", []))}"""


def _notes(notes: list[str]) -> str:
    return "\n## Notes\n\n" + "\n".join(f"- {note}" for note in notes) + "\n" if notes else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add_phase_options(parser)
    add("--tier", default="enterprise", help="the key's tier (gateway/tiers.yaml)")
    add("--set", dest="settings", action="append", default=[], help="KEY=VALUE for every process (repeatable)")
    add("--note", dest="notes", action="append", default=[], help="a line for the report's notes (repeatable)")
    add("--render", type=Path, default=None, help="write the report from this saved .json instead (notes added)")
    add("--logs", type=Path, default=None, help="copy every process's log here before the topology's folder goes")
    add("--base-port", type=int, default=0, help="first of the topology's ports (0: free ports)")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "overload_edge.md", help="report (.json beside)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        saved["notes"] = [*saved.get("notes", []), *args.notes]
        write_report(args.out, render(saved), saved)
        return 0
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    started = time.monotonic()
    settings = dict(pair.split("=", 1) for pair in args.settings)
    with edge_topology(args.base_port, settings) as topology:
        key, _ = key_store(topology).create(name="overload", tier=args.tier)
        try:
            results = measure(args, topology, key)
        finally:
            if args.logs:
                shutil.copytree(topology.log_dir, args.logs, dirs_exist_ok=True)
    plan_facts = {k: v for k, v in vars(args).items() if k not in ("out", "base_port", "logs", "notes", "render")}
    # machine_facts' "serving settings" are this process's defaults, not the topology's (deploy/topology.py sets those).
    facts = {k: v for k, v in machine_facts().items() if k != "serving settings"}
    results.update(machine={**facts, "benchmark wall time": f"{time.monotonic() - started:.0f} s"})
    results["plan"], results["notes"] = plan_facts, args.notes
    saved = json.loads(json.dumps(results, default=str))  # rendered as --render reads it (keys as strings)
    write_report(args.out, render(saved), saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
