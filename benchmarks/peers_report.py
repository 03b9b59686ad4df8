"""benchmarks/reports/peers.md and peers.png from what benchmarks/peers.py measured (pure: results in, text out)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.common import table

Results = dict[str, Any]
PRODUCT, NO_BATCHING = "product", "product-no-batching"
# route -> the peer the goals compare with (the FastAPI + ONNX Runtime peers, INT8 classifier file).
BASELINE = {"classify": "ort-int8", "detect": "ort-detector"}
LOAD = "16"  # the concurrency the goals name


def _at(results: Results, server: str, route: str, c: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results["servers"].get(server, {}).get("routes", {}).get(route, {}).get(c)
    return found


def _cell(run: dict[str, Any] | None, key: str) -> Any:
    return "-" if run is None else float(run[key])


def _cores(run: dict[str, Any] | None, key: str) -> str:
    return "-" if run is None or key not in run else f"{run[key]:.2f}"


def _failed(run: dict[str, Any] | None) -> str:
    return "-" if run is None else str(sum(n for status, n in run["statuses"].items() if status != "200"))


def _client_cores(run: dict[str, Any] | None) -> float | None:
    """The load generator's cores during ``run`` (None: not measured, or a report from before they were)."""
    return None if run is None or "client_cpu_s" not in run else float(run["client_cpu_s"] / run["seconds"])


def _idle(run: dict[str, Any] | None, cores: int | None) -> str:
    """The cores nothing used during ``run``: the machine's less the server's, the load generator's, other work's."""
    client = _client_cores(run)
    if run is None or client is None or not cores:
        return "-"
    return f"{cores - run['server_cores'] - client - run['other_cores']:.2f}"


def route_table(results: Results, route: str) -> str:
    """One row per server that answers ``route``, plus bare session.run."""
    headers = [
        "server",
        "c=1 p50 ms",
        "c=1 p99 ms",
        f"c={LOAD} req/s",
        f"c={LOAD} p50 ms",
        f"c={LOAD} p99 ms",
        f"server CPU ms/request (c={LOAD})",
        f"server cores busy (c={LOAD})",
        f"other work's cores (c={LOAD})",
        f"load generator's cores (c={LOAD})",
        f"idle cores (c={LOAD})",
        f"not 200 (c=1, c={LOAD})",
        "answer",
    ]
    rows: list[list[Any]] = []
    for name, server in results["servers"].items():
        if route not in server["routes"] or name == NO_BATCHING:
            continue
        one, load = _at(results, name, route, "1"), _at(results, name, route, LOAD)
        keys = [(one, "p50"), (one, "p99"), (load, "throughput"), (load, "p50"), (load, "p99")]
        rows.append([server["label"], *(_cell(run, key) for run, key in keys)])
        client = _client_cores(load)
        cpu = [_cell(load, "server_cpu_ms_per_request"), _cores(load, "server_cores"), _cores(load, "other_cores"),
               "-" if client is None else f"{client:.2f}", _idle(load, results["machine"].get("nproc"))]  # fmt: skip
        rows[-1] += [*cpu, f"{_failed(one)}, {_failed(load)}", (one or load or {}).get("answer", "-")]
    bare = results.get("bare", {}).get(route)
    if bare:
        label = f"bare session.run, {bare['precision']} file, batch 1, in process"
        rows.append([label, float(bare["p50"]), float(bare["p99"]), *[""] * 10])
    return table(headers, rows)


def rounds(results: Results) -> list[Results]:
    """The run's rounds, each ``{"servers": ...}``: the first measured every server, the others (``--rounds``) the
    product and the goals' peers again."""
    return [results, *({"servers": servers} for servers in results.get("repeats", []))]


@dataclass(frozen=True)
class Goal:
    """One goal against its route's peer: the ratio in each round that measured both sides, judged on the median."""

    goal: str
    product: float  # the median of the product's figure over those rounds
    peer: float
    ratios: tuple[float, ...]  # product / peer, per round
    limit: float  # the ratio the goal allows: at most (a latency) or at least (throughput)
    at_least: bool

    @property
    def ratio(self) -> float:
        return float(median(self.ratios))

    def meets(self, ratio: float) -> bool:
        return ratio >= self.limit if self.at_least else ratio <= self.limit

    @property
    def met(self) -> bool:
        return self.meets(self.ratio)

    @property
    def rounds_met(self) -> int:
        return sum(self.meets(r) for r in self.ratios)


# (goal, concurrency, figure, limit, at_least) for each route
GOALS = (
    ("p50 at c=1 <= peer's", "1", "p50", 1.0, False),
    (f"req/s at c={LOAD} >= 1.2x peer's", LOAD, "throughput", 1.2, True),
    (f"p99 at c={LOAD} <= peer's", LOAD, "p99", 1.0, False),
)


def goals(results: Results) -> list[Goal]:
    """Each route's three goals against its FastAPI + ORT peer, over every round that measured both."""
    out = []
    for route, peer in BASELINE.items():
        for text, c, key, limit, at_least in GOALS:
            pairs = [(_at(one, PRODUCT, route, c), _at(one, peer, route, c)) for one in rounds(results)]
            measured = [(float(ours[key]), float(theirs[key])) for ours, theirs in pairs if ours and theirs]
            if not measured:
                continue
            ours, theirs = zip(*measured, strict=True)
            ratios = tuple(a / b for a, b in measured)
            out.append(Goal(f"{route}: {text}", float(median(ours)), float(median(theirs)), ratios, limit, at_least))
    return out


def batching(results: Results) -> list[list[Any]]:
    """The product with adaptive batching on against off, per route and load concurrency, over every round that
    measured both (round 1; the side-by-side rounds too since 2026-12-07): each figure the median of its rounds', the
    gain the median of the rounds' gains (with more than one round, each round's gain in its own column)."""
    rows: list[list[Any]] = []
    several = _batching_rounds(results) > 1
    off_routes = results["servers"].get(NO_BATCHING, {}).get("routes", {})
    for route, levels in off_routes.items():
        for c in levels:
            pairs = [
                (on, off)
                for one in rounds(results)
                if (on := _at(one, PRODUCT, route, c)) is not None and (off := _at(one, NO_BATCHING, route, c))
            ]
            if not pairs:
                continue
            gains = [on["throughput"] / off["throughput"] for on, off in pairs]
            gain = float(median(gains))

            def mid(side: int, key: str, pairs: list[Any] = pairs) -> float:
                return float(median(float(pair[side][key]) for pair in pairs))

            failed = f"{sum(int(_failed(on)) for on, _ in pairs)}, {sum(int(_failed(off)) for _, off in pairs)}"
            row = [route, c, mid(0, "throughput"), mid(1, "throughput"), f"{gain:.2f}x"]
            if several:
                row.append(", ".join(f"{g:.2f}" for g in gains))
            row += [mid(0, "p50"), mid(1, "p50"), mid(0, "p99"), mid(1, "p99"), failed]
            rows.append([*row, "yes" if gain >= 1.0 else "**no**"])
    return rows


def _batching_rounds(results: Results) -> int:
    """How many rounds measured the product with batching off."""
    return sum(NO_BATCHING in one["servers"] for one in rounds(results))


def batching_text(results: Results) -> list[str]:
    """The batching table, and how many rounds it is the median of."""
    count = _batching_rounds(results)
    headers = ["route", "c", "req/s on", "req/s off", "gain"]
    head: list[str] = []
    if count > 1:
        headers.append("gain per round")
        head = [
            f"Medians of {count} rounds (the first in turn, the others side by side, on and off back to back); the "
            "gain is the median of the rounds' gains.",
            "",
        ]
    headers += ["p50 on", "p50 off", "p99 on", "p99 off", "not 200 (on, off)", "never slower"]
    return [*head, table(headers, batching(results))]


def _photo(photo: dict[str, Any]) -> str:
    return f"{photo['size'][0]}x{photo['size'][1]}, {photo['bytes']:,} bytes"


def goals_text(results: Results) -> list[str]:
    """The goals' table, with how many rounds measured them and how each round's ratio went."""
    found = goals(results)
    count = len(rounds(results))
    if count == 1:
        head = ["One round: each ratio is the product's figure over the peer's in that round.", ""]
    else:
        repeated = {name for servers in results.get("repeats", []) for name in servers}
        peers = sorted(repeated - {PRODUCT, NO_BATCHING})
        which = f"the FastAPI + ONNX Runtime peer{'s' if len(peers) > 1 else ''} ({', '.join(peers)})"
        if NO_BATCHING in repeated:
            which += " and the product with batching off"
        judged = (
            "A ratio is the product's figure over the peer's in the same round; a goal is judged on the median of its "
            "rounds' ratios (the product and peer columns are each side's median). On a shared VM "
        )
        if results.get("repeats_side_by_side"):
            how = (
                f"{count} rounds: the first is the tables above; for the other {count - 1} the product (batching on) "
                f"and {which} were started once, side by side, and in each round every route and concurrency was "
                "measured on each back to back, the order reversed in even rounds, so a ratio's two sides are "
                "seconds apart (an idle server waits beside the measured one: the product's tree uses ~0.01 cores). "
                f"{judged}the cores' speed drifts over minutes and "
            )
        else:
            how = (
                f"{count} rounds: the first is the tables above; in each further round the product (batching on) and "
                f"{which} were started and measured again in turn, the peers first in even rounds. {judged}"
            )
        how += "one round's ratio moves by 10-20 % from the next (TECHNICAL.md), which one round cannot show."
        head = [how, ""]
    rows = [
        [g.goal, g.product, g.peer, ", ".join(f"{r:.3f}" for r in g.ratios), f"{g.ratio:.3f}",
         f"{g.rounds_met} of {len(g.ratios)}", "yes" if g.met else "**no**"]
        for g in found
    ]  # fmt: skip
    headers = ["goal", "product", "peer", "ratio per round", "median ratio", "rounds met", "met"]
    return [*head, table(headers, rows)]


def render(results: Results, image: str = "peers.png") -> str:
    """The Markdown report; ``image``: the plot's file name beside it."""
    machine, plan, photos = results["machine"], results["plan"], results["photos"]
    detect_source = plan["detect_image"]
    if detect_source == "None":
        detect_source = "a stand-in for bus.jpg: scikit-image's astronaut stretched to 810x1080, JPEG quality 90"
    lines = [
        "# The product against hand-written peers",
        "",
        "Made by `python benchmarks/peers.py` (benchmarks/peers/ holds the peers); the numbers below come from one "
        "run, each server started in turn on loopback and measured by the same load generator: an httpx async "
        f"client over keep-alive connections, {plan['warmup']} warm-up requests before each measured run, "
        f"{plan['sequential']} requests at concurrency 1 and {plan['requests']} at each load concurrency. Each server "
        "is measured once its process tree has settled (under 0.05 cores for a second after its health route "
        "answered: the product's embedded job worker still starts then). The product is `bentoml serve "
        "services.api:Api` as shipped in local mode (validation, request ids, metrics, "
        "inference logging to SQLite and the embedded job worker on) but for the result cache, which is off "
        "(`CV_CACHE_ENABLED=false`), so no answer is a cache hit.",
        "",
        f"Photos: classify `chelsea` from scikit-image, {_photo(photos['classify'])}; detect "
        f"{_photo(photos['detect'])} ({detect_source}).",
        "",
        "Server CPU is the user + system time of the server's whole process tree (api, model services, job worker) "
        "during the measured requests; `cores busy` is that over the wall time. The load generator (this process) runs "
        "on the same cores; `idle cores` is what neither the server, the load generator nor other work used. The "
        "machine is shared: other work "
        "ran on the same cores during this run, so compare the ratios, not the absolute figures, with another run. "
        "Where the product's time goes (py-spy, `benchmarks/peers_profile.py`): peers_profile.md.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
        "## Classify",
        "",
        route_table(results, "classify"),
        "",
        "## Detect",
        "",
        route_table(results, "detect"),
        "",
        "## Goals (product / FastAPI + ONNX Runtime peer, same run)",
        "",
        *goals_text(results),
        "",
        "## Adaptive batching on against off (the product)",
        "",
        *batching_text(results),
        "",
        f"![req/s and p50]({image})",
        "",
        *(["## Notes", "", *(f"- {note}" for note in results["notes"]), ""] if results.get("notes") else []),
    ]
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    """Throughput at the load concurrency and p50 at concurrency 1, per server and route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (c, key, title) in zip(
        axes,
        ((LOAD, "throughput", f"req/s at concurrency {LOAD}"), ("1", "p50", "p50 ms at concurrency 1")),
        strict=True,
    ):
        names, values, colours = [], [], []
        for name, server in results["servers"].items():
            for route in server["routes"]:
                run = _at(results, name, route, c)
                if run is not None:
                    names.append(f"{route}: {name}")
                    values.append(float(run[key]))
                    colours.append("tab:blue" if name.startswith(PRODUCT) else "tab:grey")
        ax.barh(names, values, color=colours)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: Results, out: Path) -> None:
    """peers.md and peers.png at ``out`` (its .png sibling)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, out.with_suffix(".png").name))
    plot(results, out.with_suffix(".png"))
