"""benchmarks/reports/memory.md from the results of benchmarks/memory.py, and the soak's RSS plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import table
from benchmarks.memory_sampler import Sample, group_of, grouped, series

GOAL_MB = 300.0
MODEL_SERVICES = ("classifier", "detector", "embedder")
GROWTH_LIMIT_PCT = 5.0


def _is_model(group: str) -> bool:
    return group.lower() in MODEL_SERVICES


def process_rows(phases: dict[str, dict[str, dict[str, float]]]) -> list[list[Any]]:
    """One row per process: idle RSS/PSS/USS, then the peak RSS/PSS of every other phase."""
    names = list(phases)
    roles = sorted({r for p in phases.values() for r in p}, key=lambda r: (group_of(r), r))
    rows = []
    for role in roles:
        idle = phases[names[0]].get(role, {})
        row: list[Any] = [role, *(idle.get(f"{f}_mean", float("nan")) for f in ("rss", "pss", "uss"))]
        row += [phases[n].get(role, {}).get("pss_max", float("nan")) for n in names[1:]]
        rows.append(row)
    return rows


def service_peaks(phases: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per service (process tree): idle PSS and RSS, and the peak over every phase of the tree's PSS and RSS sums."""
    out: dict[str, dict[str, float]] = {}
    for i, per_role in enumerate(phases.values()):
        for group, v in grouped(per_role).items():
            row = out.setdefault(group, {"pss_idle": v["pss_mean"], "rss_idle": v["rss_mean"], "pss": 0.0, "rss": 0.0})
            if i == 0:
                row.update(pss_idle=v["pss_mean"], rss_idle=v["rss_mean"])
            row["pss"], row["rss"] = max(row["pss"], v["pss_max"]), max(row["rss"], v["rss_max"])
    return out


def goal_rows(peaks: dict[str, dict[str, float]]) -> list[list[Any]]:
    rows = []
    for group, v in sorted(peaks.items()):
        if _is_model(group):
            verdict = "yes" if v["pss"] <= GOAL_MB else "**no**"
            rows.append([group, v["pss_idle"], v["pss"], v["rss"], verdict])
    return rows


def dominates(phases: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per model service: how much is the process at rest (imports, sessions) and how much comes with batches."""
    idle, lines = next(iter(phases.values())), []
    for group in sorted({group_of(r) for p in phases.values() for r in p}, key=str.lower):
        if not _is_model(group):
            continue
        roles = sorted({r for p in phases.values() for r in p if group_of(r) == group})
        parts = []
        for role in roles:
            rest = idle.get(role, {}).get("pss_mean", float("nan"))
            peak = max(p.get(role, {}).get("pss_max", 0.0) for p in phases.values())
            parts.append(f"{role.split(': ', 1)[-1]} {rest:.0f} MB at rest, {peak:.0f} MB at its peak")
        lines.append(f"- {group}: " + "; ".join(parts))
    return "\n".join(lines)


def deployment_section(title: str, result: dict[str, Any]) -> str:
    phases = result["phases"]
    headers = ["process", "idle RSS", "idle PSS", "idle USS", *(f"peak PSS: {n}" for n in list(phases)[1:])]
    peaks = service_peaks(phases)
    service_rows = [[g, v["pss_idle"], v["pss"], v["rss"]] for g, v in sorted(peaks.items())]
    torch = sorted(r for r, has in result["torch"].items() if has)
    load, jobs = result["load"], result["jobs"]
    goal = goal_rows(peaks)
    goal_text = (
        table(["model service", "idle PSS", "peak PSS", "peak RSS", "within goal"], goal)
        if goal
        else "No model service runs here: the three models are in the api worker (docs/adr/0014-models-in-the-api-"
        "process-on-one-box.md), so its peak above is all three models' with the api's own memory."
    )
    return f"""## {title}

Load phase: {load["throughput"]:.1f} req/s at concurrency 16 (mixed classify/detect/search), {load["error_count"]}
errors; batch jobs: {jobs["jobs"]} ({jobs["error_count"]} errors).

### Per process, MB

{table(headers, process_rows(phases))}

### Per service (sum over its processes), MB

{table(["service", "idle PSS", "peak PSS", "peak RSS"], service_rows)}

### Goal: <= {GOAL_MB:.0f} MB per model service (peak PSS of its processes)

{goal_text}

Where it goes (PSS): at rest it is the imports and the ONNX Runtime sessions; what a worker gains above that comes
with batches (ONNX Runtime's arena, decoded images). See benchmarks/reports/memory_ort.md for the sessions alone.

{dominates(phases)}

Processes with torch's libraries mapped: {", ".join(torch) if torch else "none"}.
"""


SOAK_PLOT = "memory_soak.png"  # the soak plot beside memory.md (memory.py names it after its report)
# The soak table's columns, in the order of the rows soak_section makes.
SOAK_HEADERS = (
    *("process", "RSS first", "RSS last", "RSS growth %", "USS first", "USS last", "USS growth %"),
    *("anon RSS first", "anon RSS last", "anon RSS growth %"),
)


def soak_section(soak: dict[str, Any], plot: str = SOAK_PLOT) -> str:
    nan = float("nan")
    columns = ("rss_first", "rss_last", "rss_growth_pct", "uss_first", "uss_last", "uss_growth_pct")
    anon = ("anon_first", "anon_last", "anon_growth_pct")
    rows = [[role, *(g[c] for c in columns), *(g.get(c, nan) for c in anon)] for role, g in soak["growth"].items()]
    worst = max(soak["growth"].items(), key=lambda kv: kv[1]["rss_growth_pct"], default=("-", {"rss_growth_pct": 0}))
    grew = [r for r, g in soak["growth"].items() if g["rss_growth_pct"] >= GROWTH_LIMIT_PCT]
    ok = not grew and soak["error_count"] == 0
    minutes = (soak["t1"] - soak["t0"]) / 60
    return f"""## Soak through the edge

{minutes:.1f} minutes at {soak["rate"]:.1f} req/s (70 % of the {soak["peak"]:.1f} req/s the load phase reached),
mixed classify/detect/search at concurrency 16 plus one batch job of 16 images a minute: {soak["ok"]} answers,
**{soak["error_count"]} errors**, jobs {soak["batch"]["jobs"]}. Growth is the mean of the first minute after a
{soak["warmup_s"] / 60:.0f}-minute warm-up against the mean of the last minute.

{table(list(SOAK_HEADERS), rows)}

Anonymous RSS is the heap and stacks alone (`RssAnon`): where RSS grows and it does not, the growth is file pages the
process maps (for Prometheus, its memory-mapped TSDB chunks), which the kernel drops under memory pressure.

Largest RSS growth: {worst[0]} ({worst[1]["rss_growth_pct"]:+.1f} %). Verdict: **{"pass" if ok else "fail"}**
(no error and every process under {GROWTH_LIMIT_PCT:.0f} % growth{"" if not grew else "; over: " + ", ".join(grew)}).
Errors seen: {soak["errors"][:5] + soak["batch"]["errors"][:5] or "none"}.
{prometheus_head_note(soak.get("prometheus_head"))}{series_growth_note(soak.get("prometheus_series"))}
![RSS over the soak]({plot})
"""


def prometheus_head_note(head: dict[str, dict[str, float] | None] | None) -> str:
    """What Prometheus held at the soak's start and end: its growth is its TSDB head filling, or something else."""
    if not head or not head.get("start") or not head.get("end"):
        return ""
    start, end = head["start"], head["end"]
    assert start is not None and end is not None

    def pair(name: str, scale: float = 1.0, unit: str = "") -> str:
        return f"{start.get(name, float('nan')) / scale:,.0f} -> {end.get(name, float('nan')) / scale:,.0f}{unit}"

    return f"""
Prometheus over the soak (its own /metrics): head series {pair("prometheus_tsdb_head_series")}, head chunks
{pair("prometheus_tsdb_head_chunks")}, Go heap in use {pair("go_memstats_heap_inuse_bytes", 2**20, " MB")}. The head
holds every series' samples since the last block was cut (every 2 hours); it grows with the scrapes until then, so a
20-minute soak sees it grow whatever the services do (retention and scrape interval bound it, not the load).
"""


def series_growth_note(series: dict[str, dict[str, int] | None] | None, top: int = 10) -> str:
    """The metric names whose series Prometheus gained most over the soak: label sets first seen, or one growing."""
    if not series or not series.get("start") or not series.get("end"):
        return ""
    start, end = series["start"] or {}, series["end"] or {}
    gained = sorted((-(end[n] - start.get(n, 0)), n) for n in end if end[n] > start.get(n, 0))
    if not gained:
        return "\nNo metric gained series over the soak.\n"
    listed = ", ".join(f"`{name}` +{-n} ({start.get(name, 0)} -> {end[name]})" for n, name in gained[:top])
    return f"\nMetrics that gained the most series over the soak (of {len(gained)} that gained any): {listed}.\n"


def render(r: dict[str, Any], plot: str = SOAK_PLOT) -> str:
    """The report; ``plot`` is the soak plot's file name beside it."""
    gallery = r["gallery"]
    ((gname, gphase),) = gallery["phases"].items()
    gpeak = max((v["rss_max"] for v in gphase.values()), default=float("nan"))
    gpss = max((v["pss_max"] for v in gphase.values()), default=float("nan"))
    facts = "\n".join(f"- {k}: {v}" for k, v in r["machine"].items())
    serve = (
        deployment_section("`make serve` (bentoml serve services.api:Api, local mode)", r["serve"])
        if "serve" in r
        else ""
    )
    title = "`make serve` and of the production topology" if serve else "the production topology (`--skip-serve`)"
    return f"""# Memory: every process of {title}

Generated by `python benchmarks/memory.py` on {r["machine"]["date"]}. A background thread reads every process's
RSS, PSS and USS (psutil, `/proc/<pid>/smaps_rollup`) every second (every 0.5 s during the gallery build). PSS
shares each shared page among the processes that map it, so PSS sums over a process tree without counting the
shared libraries twice; USS is what the process alone holds. Processes are named by role from their command lines
(benchmarks/memory_sampler.py); in the topology each role is prefixed with its compose service.

## Gallery build

`python -m services.index.build_gallery --tiny-imagenet-val` ({gname}): {gallery["seconds"]:.0f} s, peak RSS
{gpeak:.0f} MB, peak PSS {gpss:.0f} MB.

{serve}
{deployment_section("Production topology (python -m deploy up, natively), through the edge", r["production"])}
{soak_section(r["production"]["soak"], plot)}
## Machine

{facts}
"""


def plot_soak(samples: list[Sample], soak: dict[str, Any], path: Path) -> None:
    """RSS of every process over the soak (minutes since it began), one line per process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 8))
    window = [s for s in samples if soak["t0"] <= s.t <= soak["t1"]]
    for role, (ts, vs) in sorted(series(window).items()):
        if max(vs) >= 40:  # the small helpers would only crowd the legend
            ax.plot([(t - soak["t0"]) / 60 for t in ts], vs, label=role, linewidth=1)
    ax.axvline(soak["warmup_s"] / 60, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="minutes into the soak", ylabel="RSS (MB)", title="RSS per process during the soak")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
