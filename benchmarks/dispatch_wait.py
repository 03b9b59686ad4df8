"""A lone request after a burst, on the model-service topology: this checkout against a baseline ref, one run.

``python benchmarks/dispatch_wait.py --baseline REF`` checks REF out in a temporary worktree (as
benchmarks/regression.py does), serves both sides at once with their model services (the production topology: the
api calls a classifier service whose ``infer`` BentoML batches), and on each side in turn: classify at concurrency 1,
a burst at concurrency 16, then blocks at concurrency 1 again. BentoML's dispatcher learns the burst's queue wait and
holds lone calls back for it afterwards (ADR 0020); ``--baseline`` should name a commit before services/dispatch.py.
Writes benchmarks/reports/dispatch_wait.md (+ .json).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, photos, table, write_report  # noqa: E402
from benchmarks.regression_served import serving  # noqa: E402
from benchmarks.regression_sides import MODELS, Side, baseline_worktree, import_models, share_mirrors  # noqa: E402
from benchmarks.serving import ROUTES  # noqa: E402
from benchmarks.serving import _load as load_once  # noqa: E402

log = logging.getLogger("benchmarks.dispatch_wait")
ROUTE = "classify"


def phases(url: str, jpeg: bytes, plan: argparse.Namespace) -> dict[str, Any]:
    """c=1, a burst at c=16, then ``plan.blocks`` blocks at c=1: each block's p50 and the burst's throughput."""

    def load(concurrency: int, total: int) -> dict[str, Any]:
        return asyncio.run(load_once(url, ROUTE, jpeg, concurrency, total))

    before = load(1, plan.sequential)
    burst = load(16, plan.burst)
    after = [load(1, plan.sequential) for _ in range(plan.blocks)]
    return {
        "before_p50": before["p50"],
        "burst_req_s": burst["throughput"],
        "after_p50": [block["p50"] for block in after],
        "statuses": [before["statuses"], burst["statuses"], *(block["statuses"] for block in after)],
    }


def run(plan: argparse.Namespace) -> dict[str, Any]:
    build_cache = share_mirrors()
    jpeg = photos()[ROUTES[ROUTE][1]]
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "tree": []}
    with tempfile.TemporaryDirectory(prefix="cv-dispatch-") as tmp, baseline_worktree(REPO, plan.baseline) as wt:
        root, commit = wt
        work = Path(tmp)
        sides = [Side(n, r, work / n / "bentoml", work / n / "data") for n, r in (("baseline", root), ("tree", REPO))]
        for side in sides:
            import_models(side, list(MODELS), build_cache)
        with serving(sides, work, [None, None]) as servers:
            for server in servers.values():  # warm-up: BentoML's dispatcher trains on its first calls
                asyncio.run(load_once(server.url, ROUTE, jpeg, 1, 30))
            for index in range(plan.rounds):
                order = list(servers) if index % 2 == 0 else list(servers)[::-1]
                for name in order:
                    result = phases(servers[name].url, jpeg, plan)
                    log.info("round %d %s: %s", index, name, result)
                    results[name].append(result)
    return {"baseline": f"{plan.baseline} ({commit[:10]})", "plan": vars(plan), "results": results}


def markdown(report: dict[str, Any]) -> str:
    plan = report["plan"]
    rows = []
    for name, rounds in report["results"].items():
        for index, result in enumerate(rounds):
            after = " / ".join(f"{p:.1f}" for p in result["after_p50"])
            rows.append([name, index, f"{result['before_p50']:.1f}", f"{result['burst_req_s']:.1f}", after])
    heading = ["side", "round", "c=1 p50 before the burst (ms)", "burst c=16 req/s", "c=1 p50 after it, per block (ms)"]
    facts = machine_facts()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"""# A lone request after a burst (model-service topology)

`python benchmarks/dispatch_wait.py --baseline {plan["baseline"]}`, {when}.
Both sides served at once with their model services (`CV_MODELS_IN_PROCESS=false`, result cache off), measured in
turn: {plan["sequential"]} classify requests at concurrency 1, a burst of {plan["burst"]} at 16, then {plan["blocks"]}
blocks of {plan["sequential"]} at 1 (`chelsea`, 451x300). Baseline: {report["baseline"]}; tree: this checkout.
Machine: {facts["cpu"]}, {facts["nproc"]} cores; BentoML {facts["bentoml"]}.

{table(heading, rows)}

ADR 0020 (docs/adr/0020-model-services-run-a-batch-when-the-model-is-free.md): BentoML's dispatcher holds a lone call
back for the mean queue wait it learned during the burst; services/dispatch.py pins that wait at zero.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--baseline", required=True, help="git ref before services/dispatch.py")
    add("--rounds", type=int, default=2)
    add("--sequential", type=int, default=100, help="requests per block at concurrency 1")
    add("--burst", type=int, default=400, help="requests of the burst at concurrency 16")
    add("--blocks", type=int, default=3, help="blocks at concurrency 1 after the burst")
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "dispatch_wait.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan = parse_args(argv)
    report = run(plan)
    write_report(plan.out, markdown(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
