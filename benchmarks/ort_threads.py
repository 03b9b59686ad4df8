"""ONNX Runtime's thread settings on this CPU: what a lone run and two overlapping runs cost (ADR 0019).

For the served INT8 classifier and detector, one bare session per setting (one intra-op thread that does not spin,
two that do not, two that spin, two that spin only while a run lasts: the solo session of services/models/runtime.py),
batch 1: the latency of a lone run with a little Python work between runs (as a server does), the CPU it took, and
the runs per second and CPU per run of two callers at once. Writes benchmarks/reports/ort_threads.md/.json.

    python benchmarks/ort_threads.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, table, write_report  # noqa: E402

SETTINGS: dict[str, tuple[int, bool, bool]] = {  # name: (threads, spinning, spinning stops when a run ends)
    "1 thread, no spinning (the shared session)": (1, False, False),
    "2 threads, no spinning": (2, False, False),
    "2 threads, spinning (ONNX Runtime's default; the peer's)": (2, True, False),
    "2 threads, spinning during a run only (the solo session)": (2, True, True),
}
SHAPES = {"classifier": (1, 3, 224, 224), "detector": (1, 3, 416, 416)}
BETWEEN_S = 0.002  # Python work between two lone runs: a server decodes, resizes and answers in between


def served_int8(name: str) -> Path:
    from services.models.store import list_versions

    entries = list_versions(name)
    entry = next((e for e in entries if e.spec.stage.value == "production"), entries[-1])
    return Path(entry.paths["int8"])


def session(path: Path, threads: int, spinning: bool, stop: bool) -> Any:
    """A bare session made by the product's own code (services/models/runtime.py), on the CPU."""
    from services.models.runtime import new_session

    return new_session(path, ["CPUExecutionProvider"], threads=threads, spinning=spinning, stop_spinning=stop)


def measure(path: Path, shape: tuple[int, ...], setting: tuple[int, bool, bool], runs: int) -> dict[str, float]:
    import numpy as np

    sess = session(path, *setting)
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    for _ in range(20):
        sess.run(None, feed)
    lone, cpu0 = [], time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        sess.run(None, feed)
        lone.append((time.perf_counter() - started) * 1000)
        until = time.perf_counter() + BETWEEN_S
        while time.perf_counter() < until:  # busy, as a server's Python work is
            pass
    lone_cpu = (time.process_time() - cpu0) / runs * 1000 - BETWEEN_S * 1000

    def caller() -> None:
        for _ in range(runs // 2):
            sess.run(None, feed)

    cpu1, wall1 = time.process_time(), time.perf_counter()
    callers = [threading.Thread(target=caller) for _ in range(2)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    done = 2 * (runs // 2)
    return {
        "lone p50 ms": statistics.median(lone),
        "lone CPU ms per run": lone_cpu,
        "two callers runs/s": done / (time.perf_counter() - wall1),
        "two callers CPU ms per run": (time.process_time() - cpu1) / done * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "ort_threads.md")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine_facts(), "models": {}}
    sections = []
    for model, shape in SHAPES.items():
        path = served_int8(model)
        rows = {name: measure(path, shape, setting, args.runs) for name, setting in SETTINGS.items()}
        results["models"][model] = {"file": path.name, "rows": rows}
        headers = ["session", *next(iter(rows.values()))]
        sections.append(
            f"## {model} ({path.name}, batch 1)\n\n"
            + table(headers, [[name, *(round(v, 2) for v in row.values())] for name, row in rows.items()])
        )
    machine = "\n".join(f"- {k}: {v}" for k, v in results["machine"].items())
    markdown = (
        "# ONNX Runtime threads: a lone run against two at once\n\n"
        f"Made by `python benchmarks/ort_threads.py --runs {args.runs}`: one bare session per setting, batch 1; a lone "
        f"run has {BETWEEN_S * 1000:.0f} ms of busy Python work after it (its CPU column leaves that out); two callers "
        "run on one session from two threads. Why the product keeps a one-thread session for overlapping runs and a "
        "two-thread solo session for a request served alone: docs/adr/0019-a-lone-request-takes-the-box.md.\n\n"
        f"## Machine\n\n{machine}\n\n" + "\n\n".join(sections) + "\n"
    )
    write_report(args.out, markdown, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
