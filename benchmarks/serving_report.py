"""The serving benchmark's report: derived figures, the targets, and benchmarks/reports/serving.md."""

from __future__ import annotations

from typing import Any

from benchmarks.common import table
from services.models.catalogue import CATALOGUE

Results = dict[str, Any]
# The routes measured (classify, detect) -> the model each runs; search also reads the gallery, so it is left out.
MODEL_OF = {entry.route.removeprefix("/"): entry.name for entry in CATALOGUE if entry.task != "embedding"}
STAGES = ("decode", "preprocess", "predict", "postprocess")
TARGET_P50 = {"classify": 15.0, "detect": 35.0}
TARGET_OVERHEAD_MS, TARGET_SPEEDUP = 3.0, 2.5
# Lines in a server's log that make a run suspect (the report lists any found).
LOG_ISSUES = ("Traceback", '"level": "ERROR"', '"status": 503', "status=503")


def derived(r: Results) -> dict[str, dict[str, float]]:
    """Per route: HTTP p50 (concurrency 1) minus the in-process p50s; throughput ON / OFF per concurrency."""
    out = {}
    for x, model in MODEL_OF.items():
        p50, ip = r["on"][x][1]["p50"], r["in_process"]
        out[x] = {
            "server overhead: HTTP p50 - bare ORT p50 (ms)": p50 - ip["bare"][model]["p50"],
            "server overhead: HTTP p50 - in-process pipeline p50 (ms)": p50 - ip["pipeline"][model]["p50"],
        }
        out[x].update(
            {
                f"batching speed-up at concurrency {c} (ON / OFF req/s)": r["on"][x][c]["throughput"]
                / max(r["off"][x][c]["throughput"], 1e-9)
                for c in r["on"][x]
                if c > 1
            }
        )
    return out


def targets(r: Results) -> list[tuple[str, str, str, float, bool]]:
    """(key, target, goal, measured, met) per route and target."""
    d, top, rows = derived(r), max(r["on"]["classify"]), []
    for x in MODEL_OF:
        p50, over = r["on"][x][1]["p50"], d[x]["server overhead: HTTP p50 - bare ORT p50 (ms)"]
        gain = d[x][f"batching speed-up at concurrency {top} (ON / OFF req/s)"]
        rows += [
            (f"p50:{x}", f"{x} p50 (HTTP, c=1)", f"<= {TARGET_P50[x]:.0f} ms", p50, p50 <= TARGET_P50[x]),
            (
                f"overhead:{x}",
                f"{x} overhead over bare ORT",
                f"<= {TARGET_OVERHEAD_MS:.0f} ms",
                over,
                over <= TARGET_OVERHEAD_MS,
            ),
            (f"speedup:{x}", f"{x} batching speed-up, c={top}", f">= {TARGET_SPEEDUP}x", gain, gain >= TARGET_SPEEDUP),
        ]
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
        lead = (
            f"The model alone (bare ORT) takes {bare:.1f} ms of {TARGET_P50[route]:.0f} ms"
            if kind == "p50"
            else f"The overhead is {local:.1f} ms decode/pre/postprocessing (left out of the bare call), {hop:.1f} ms "
            f"api -> model service hop and {http:.1f} ms HTTP/client; the model alone takes {bare:.1f} ms"
        )
        return (
            f"**{route}, {kind}** (measured {measured:.1f} ms). HTTP p50 {one['p50']:.1f} ms; medians: "
            f"{breakdown(st)}. {lead}; predict inside the service {st.get('predict', 0.0):.1f} ms, in-process "
            f"pipeline {pipe:.1f} ms. With batching off: {r['off'][route][1]['p50']:.1f} ms at concurrency 1."
        )
    on, off = r["on"][route][top := max(r["on"][route])], r["off"][route][top]
    b1, b16 = ip["bare"][model]["p50"], ip["bare_batch16"][model]["p50"] / 16
    ceiling = (
        f"one {model} ORT call over 16 images costs {b16:.1f} ms per image against {b1:.1f} ms at batch 1, so "
        f"batching can gain at most {b1 / b16:.2f}x in model time"
    )
    return (
        f"**{route}, batching** (measured {measured:.2f}x). Concurrency {top}: ON {on['throughput']:.1f} req/s "
        f"(mean batch {on['mean_batch']:.1f}; {breakdown(on['stages'])}) vs OFF {off['throughput']:.1f} req/s "
        f"({breakdown(off['stages'])}). On this CPU {ceiling}."
    )


def http_tables(r: Results) -> tuple[str, str, str]:
    """Concurrency 1, throughput and stage-breakdown tables."""
    runs = [(k, c, m, r[m][k][c]) for k in MODEL_OF for c in r["on"][k] for m in ("on", "off")] + [
        ("search", 1, "on", r["search"])
    ]
    cols = (*STAGES, "hop", "http", "total", "batch_size")
    return (
        table(
            ["route", "batching", "ok", "p50 ms", "p99 ms", "mean ms"],
            [[k, m, v["ok"], v["p50"], v["p99"], v["mean"]] for k, c, m, v in runs if c == 1],
        ),
        table(
            ["route", "concurrency", "batching", "ok", "other statuses", "req/s", "p50 ms", "p99 ms", "mean batch"],
            [
                [
                    k,
                    c,
                    m,
                    v["ok"],
                    {s: n for s, n in v["statuses"].items() if s != "200"} or "-",
                    v["throughput"],
                    v["p50"],
                    v["p99"],
                    v["mean_batch"],
                ]
                for k, c, m, v in runs
                if c > 1
            ],
        ),
        table(
            ["route", "scenario", *STAGES, "hop", "http", "server total", "batch"],
            [[k, f"c={c}, {m}", *(v["stages"].get(s, float("nan")) for s in cols)] for k, c, m, v in runs],
        ),
    )


def render(r: Results) -> str:
    ip, rows, (one, loaded, stages) = r["in_process"], targets(r), http_tables(r)
    logs = (
        "; ".join(
            f"{k}: " + ", ".join(f"{n}x `{s}`" for s, n in v.items() if n)
            for k, v in r["server_logs"].items()
            if any(v.values())
        )
        or "none"
    )
    sections = [
        (
            "Machine",
            table(["fact", "value"], [[k, v] for k, v in r["machine"].items()])
            + "\n\nCPU used by processes outside this benchmark while it ran (other sessions share these cores):\n\n"
            + table(
                ["phase", "wall s", "CPU s of other processes", "other cores busy"],
                [[k, v["wall_s"], v["other_cpu_s"], f"{v['other_cores']:.2f}"] for k, v in r["load"].items()],
            ),
        ),
        ("Method", METHOD),
        (
            "1. In process, batch 1",
            table(
                [
                    "model",
                    "input",
                    "precision",
                    "bare ORT p50 ms",
                    "bare p99 ms",
                    "pipeline p50 ms",
                    "pipeline p99 ms",
                    "calls",
                ],
                [
                    [
                        k,
                        ip["bare"][k]["input"],
                        ip["bare"][k]["precision"],
                        ip["bare"][k]["p50"],
                        ip["bare"][k]["p99"],
                        ip["pipeline"][k]["p50"],
                        ip["pipeline"][k]["p99"],
                        ip["bare"][k]["n"],
                    ]
                    for k in MODEL_OF.values()
                ],
            )
            + "\n\n"
            + "; ".join(
                f"{k} bare ORT at batch 16: p50 {b['p50']:.1f} ms per call, {b['p50'] / 16:.1f} ms per image"
                for k, b in ip["bare_batch16"].items()
            )
            + ".",
        ),
        ("2. HTTP at concurrency 1", one),
        ("3. Throughput", loaded),
        (
            "4. Derived",
            table(
                ["route", "metric", "value"],
                [
                    [x, k, f"{v:.2f}x" if "speed-up" in k else v]
                    for x, vals in derived(r).items()
                    for k, v in vals.items()
                ],
            ),
        ),
        ("5. Where the time goes (medians of the responses' `timings_ms`)", STAGE_NOTE + "\n\n" + stages),
        (
            "6. Targets",
            table(
                ["target", "goal", "measured", "met"],
                [[t, g, f"{v:.2f}", "met" if ok else "NOT met"] for _, t, g, v, ok in rows],
            )
            + "\n\n### Missed targets\n\n"
            + ("\n\n".join(analysis(r, key, v) for key, _, _, v, ok in rows if not ok) or "None."),
        ),
        *sweep_section(r),
        ("Notes", NOTES.format(issues=", ".join(f"`{p}`" for p in LOG_ISSUES), logs=logs)),
    ]
    head = f"# Serving benchmark\n\nGenerated by `benchmarks/serving.py` on {r['machine']['date']}.\n\n"
    return head + "\n\n".join(f"## {title}\n\n{body}" for title, body in sections) + "\n"


def sweep_section(r: Results) -> list[tuple[str, str]]:
    rows = [[n, v["ok"], v["throughput"], v["p50"], v["p99"], v["mean_batch"]] for n, v in sorted(r["sweep"].items())]
    return (
        [
            (
                "7. CV_MAX_BATCH_SIZE sweep (classify, batching on, highest concurrency)",
                table(["max_batch_size", "ok", "req/s", "p50 ms", "p99 ms", "mean batch"], rows)
                + f"\n\nHighest throughput: max_batch_size={max(rows, key=lambda row: row[2])[0]}. 16 is the run of "
                "section 3, the others fresh servers; a few percent is within run-to-run noise here.",
            )
        ]
        if rows
        else []
    )


METHOD = """- **Bare ORT**: `session.run` alone on the session `OrtRunner` builds from the model-store file of the
  newest classifier / detector version, in the precision serving picks (intra-op threads 2, inter-op 1,
  `ORT_ENABLE_ALL`, same providers); input: the
  real photo, preprocessed once; 10 warm-up calls, then timed calls at batch 1.
- **Pipeline**: `ModelWorker(build_pool(name, settings)).run([item])` on the decoded photo, in this process.
- **HTTP**: `bentoml serve services.api:Api` on loopback (`tests/integration/server.py`) with every model in its own
  service (`CV_MODELS_IN_PROCESS=false`, the production topology, so the api -> model service hop is measured; `make
  serve` keeps the models in the api process, which benchmarks/reports/peers.md measures), a Tiny-ImageNet val gallery
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
