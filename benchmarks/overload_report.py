"""benchmarks/reports/overload.md from the figures benchmarks/overload.py measured."""

from __future__ import annotations

from typing import Any

from benchmarks.common import table

METHOD = """\
Each server is `bentoml serve services.api:Api` on loopback ({placement}), result cache off
(`CV_CACHE_ENABLED=false`), started as tests/integration/server.py does. Each phase is a fixed wall time of closed-loop
clients posting scikit-image's `chelsea` (451x300, JPEG q90) to `POST /api/v1/classify`; a client refused with 503
waits the `Retry-After` it is sent (as the SDK does) before sending again. The phases of one server run one after
another after a warm-up at concurrency 16; the servers one after another, all in one run, so compare ratios within the
run rather than absolute figures across runs.

- *answered req/s*: 200 answers per second of the phase; latencies are the client's, of answered requests only.
- *refused*: 503 `overloaded` answers and their latency; *other errors*: any other answer (e.g. 503
  `model-unavailable`: the model service's batcher shedding a request it cannot run within `CV_MAX_LATENCY_MS`),
  and transport errors.
- *server 200 / 503*: the server's own counts for the phase (`cv_http_requests_total`, `cv_admission_refused_total`
  from its /metrics): equal to the client's when nothing admitted was lost.
- *server: refusal / answer p99*: the same, as the api's access log times them (from its middleware, without the
  time a request waits for the api's event loop or the client's).
- *vs c=16*: answered req/s over the c=16 figure of the same server; in brackets, round by round.
- *server CPU*: cores used by the server's process tree (api, and model services where they run) during the phase.
"""


PLACEMENT = {
    "in-process": "the models in the api process, as `make serve` runs them",
    "services": "the api and the three model services",
}

HISTORY = """\
Earlier runs of this script on the same shared machine, which chose the defaults (the figures are theirs, not this
run's):

- Run 1 (servers one after another, `Retry-After` fixed at 1 s, queue timeout 250 ms, limit 2..32 steering to
  500 ms): at concurrency 256 about 184 refusals a second (240 excess callers, each back after 1 s) and answered
  req/s 58 % of c=16; refusals that queued and timed out took the full 250 ms. Hence `Retry-After` that grows with
  refusals per admission, and a 50 ms queue timeout.
- Run 3 (interleaved; limit 8..32 steering to 500 ms): the server got 0.2-0.3 cores (load average 22 on 2 cores),
  every hold was over 500 ms, the limit sat at 8 and answered req/s at c=32 were 5.0 with admission control against
  11.0 without (c=256: 4.2 against 5.7, but without it p99 14.0 s and 494 requests shed by the model service's
  batcher after ~11 s as 503 `model-unavailable`). Hence the floor of 16 (a full batch) and the 1 s target.
- Run 4 (limit 16..32 steering to 1 s; `Retry-After` = refused per admitted over the last 2 s, 1..30 s): c=32
  refused 178 (every hold was over 1 s, so the limit left 32); c=256 answered 5.7 req/s (47 % of c=16) against
  7.9 (84 %) without admission control, whose p99 was 12.2 s with 529 requests shed as `model-unavailable`; and 58
  connection resets (aiohttp `ClientOSError`) with it: refusals answered while the client was still uploading.
  Hence the refusal drains the body first, and `Retry-After` is scaled each second until refusals come back
  about as fast as admissions.
- Run 5 (these defaults): no transport errors any more, and the server's counts equal the client's (nothing
  admitted lost, every 503 an `overloaded` refusal); but the machine's other load fell from ~23 to ~6 between the
  two rounds, so its ratios (35 % and 228 % at c=256) say nothing.
- In every run the api's own refusal time (its access log) stayed small (p99 14-45 ms) while the client saw the
  refusal after up to ~2 s at c=256: that wait is before the app runs (the api process waiting for CPU, uvicorn
  parsing), which admission control cannot shorten on a machine that gives the server a quarter of a core.
- Run 6 (2026-12-05 02:29, the model services, a machine shared with other jobs): c=16 43.4 req/s; c=256 28.6
  (66 % of c=16), p99 2.0 s, 1732 refusals (client p99 1.0 s, server p99 66 ms); admission off p99 10.8 s with 40
  shed as `model-unavailable`; batching on +40 % / +85 % at c=16 / c=32.
"""


def _row(label: str, phase: dict[str, Any], base: float | None, base_rounds: list[float]) -> list[Any]:
    lat, ref, counts = phase["latency_ms"], phase["refusal_ms"], phase.get("server_counts", {})
    other = {k: v for k, v in phase["statuses"].items() if k not in ("200", "503", "503 overloaded")}
    ratio = f"{phase['throughput'] / base:.0%}" if base else "-"
    by_round = phase.get("throughput_by_round", [])
    if base_rounds and len(base_rounds) == len(by_round):  # each round's own ratio: the machine's load varies
        ratio += " (" + ", ".join(f"{a / b:.0%}" for a, b in zip(by_round, base_rounds, strict=True)) + ")"
    return [
        label,
        phase["concurrency"],
        phase["throughput"],
        ratio,
        lat["p50"],
        lat["p99"],
        lat["max"],
        phase["refused"],
        ref["p50"] if phase["refused"] else "-",
        ref["p99"] if phase["refused"] else "-",
        phase.get("server_ms", {}).get("503", {}).get("p99", "-"),
        phase.get("server_ms", {}).get("200", {}).get("p99", "-"),
        sum(other.values()),
        f"{counts.get('status 200', 0):.0f} / {counts.get('status 503', 0):.0f}",
        phase["server_cpu_cores"],
    ]


HEADERS = [
    "server",
    "concurrency",
    "answered req/s",
    "vs c=16",
    "p50 ms",
    "p99 ms",
    "max ms",
    "refused",
    "refusal p50 ms",
    "refusal p99 ms",
    "server: refusal p99 ms",
    "server: answer p99 ms",
    "other errors",
    "server 200 / 503",
    "server CPU cores",
]


def _overload_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for label in ("admission on", "admission off"):
        phases = results.get(label)
        if not phases:
            continue
        first = phases.get("16", phases.get(16, {}))
        base, base_rounds = first.get("throughput"), first.get("throughput_by_round", [])
        rows += [_row(label, p, base, base_rounds) for c, p in phases.items() if c != "server_error_lines"]
    return rows


def _batching_rows(results: dict[str, Any]) -> list[list[Any]]:
    on, off = results.get("admission off") or {}, results.get("batching off") or {}
    rows = []
    for c in ("16", "32", 16, 32):
        if c in on and c in off:
            a, b = on[c], off[c]
            rows.append(
                [
                    c,
                    a["throughput"],
                    b["throughput"],
                    f"{a['throughput'] / b['throughput'] - 1:+.0%}",
                    a["latency_ms"]["p50"],
                    b["latency_ms"]["p50"],
                    a["latency_ms"]["p99"],
                    b["latency_ms"]["p99"],
                ]
            )
    return rows


def render(results: dict[str, Any]) -> str:
    """The Markdown report."""
    machine = "\n".join(f"- {k}: {v}" for k, v in results["machine"].items())
    plan = ", ".join(f"{k}={v}" for k, v in results["plan"].items() if k != "out")
    batching = table(
        [
            "concurrency",
            "batching on req/s",
            "batching off req/s",
            "gain",
            "on p50 ms",
            "off p50 ms",
            "on p99 ms",
            "off p99 ms",
        ],
        _batching_rows(results),
    )
    errors = {
        k: v.get("server_error_lines") for k, v in results.items() if isinstance(v, dict) and ("16" in v or 16 in v)
    }
    return f"""# Overload: admission control and adaptive batching

Written by `benchmarks/overload.py` ({plan}).

## Method

{METHOD.format(placement=PLACEMENT[results["plan"].get("models", "services")])}
## Machine

{machine}

## Admission control (classify, chelsea, cache off)

{table(HEADERS, _overload_rows(results))}

## Adaptive batching on vs off (admission off on both, so only batching differs)

{batching}

Server ERROR log lines per server: {errors}

## History

{HISTORY}"""
