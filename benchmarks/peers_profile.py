"""Where the product's time goes: py-spy on every process of `bentoml serve services.api:Api` under load.

Starts the product as benchmarks/peers.py does (``--set KEY=VALUE`` adds settings), warms it up, then records each
process of its tree with ``py-spy record --format raw`` while the same load generator sends one route at one
concurrency. Prints, per process, the CPU milliseconds it spent per answer and the busiest Python frames (self and
inclusive share of the samples that were not waiting in select or on a condition). The raw stacks stay in --out
(flame graphs: any collapsed-stack viewer, e.g. speedscope). Needs py-spy (the dev extra) and ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import photos  # noqa: E402
from benchmarks.loopback import launch, settle  # noqa: E402
from benchmarks.peers import FIELDS, _load, detect_photo  # noqa: E402
from benchmarks.peers_servers import product  # noqa: E402
from deploy.topology import free_port  # noqa: E402

RATE = 100  # py-spy samples a second
IDLE = ("select (selectors", "Condition.wait", "wait (threading", "_worker (concurrent")


def _frame(frame: str) -> str:
    """'run (/x/onnxruntime_inference_collection.py:220)' -> 'run (onnxruntime_inference_collection.py)'."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})" if where else function


def top_frames(raw: Path, limit: int) -> dict[str, Any]:
    """Self and inclusive shares of the busy samples in a py-spy raw (collapsed) file."""
    own, inclusive, busy = Counter[str](), Counter[str](), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(frame) for frame in stack.split(";")]
        if not stack or any(mark in frames[-1] for mark in IDLE):
            continue
        busy += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    share: dict[str, Any] = {"busy_samples": busy}
    for name, counter in (("self", own), ("inclusive", inclusive)):
        share[name] = {frame: round(100 * n / max(busy, 1), 1) for frame, n in counter.most_common(limit)}
    return share


def _out(args: argparse.Namespace, proc: psutil.Process) -> list[str]:
    return ["--nonblocking", *(["--gil"] if args.gil else []), "-o", str(args.out / f"{proc.pid}.txt")]


def gil_share(raw: Path, seconds: float, rate: int) -> float:
    """With ``--gil`` py-spy records only the thread holding the GIL: the share of the samples taken that found one."""
    samples = sum(int(line.rpartition(" ")[2]) for line in raw.read_text().splitlines() if line.strip())
    return round(samples / (seconds * rate), 3)


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in procs:
        try:
            out[proc.pid] = sum(proc.cpu_times()[:2])
        except psutil.Error:
            continue
    return out


def profile(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    extra = dict(pair.split("=", 1) for pair in args.set)
    target = product("profiled", workdir, True, (args.concurrency,), True, extra)
    jpeg = photos()["chelsea"] if args.route == "classify" else detect_photo(None)
    path, fields = target.routes[args.route], FIELDS[args.route]
    with launch(target, workdir, args.port or free_port(), 300) as (url, root):
        settle(root)  # the embedded job worker is still starting when the health route first answers
        asyncio.run(_load(url, path, fields, jpeg, args.concurrency, args.warmup))
        procs = [root, *root.children(recursive=True)]
        spy = str(Path(sys.executable).with_name("py-spy"))
        spies = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(p.pid),
                    "-d",
                    str(args.seconds),
                    "-r",
                    str(RATE),
                    "-f",
                    "raw",
                    *_out(args, p),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for p in procs
        ]
        before, started, answered = _cpu(procs), time.monotonic(), 0
        while time.monotonic() - started < args.seconds:
            latencies, *_ = asyncio.run(_load(url, path, fields, jpeg, args.concurrency, 4 * args.concurrency))
            answered += len(latencies)
        after = _cpu(procs)
        for process in spies:
            process.wait()
        report: dict[str, Any] = {"route": args.route, "concurrency": args.concurrency, "answers": answered}
        for proc in procs:
            if proc.pid not in after:
                continue
            raw = args.out / f"{proc.pid}.txt"
            report[f"{proc.pid} {' '.join(proc.cmdline())[-70:]}"] = {
                "cpu_ms_per_answer": round(1000 * (after[proc.pid] - before[proc.pid]) / max(answered, 1), 2),
                **(top_frames(raw, args.top) if raw.is_file() else {}),
                **({"gil_held_share": gil_share(raw, args.seconds, RATE)} if args.gil and raw.is_file() else {}),
            }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--route", choices=sorted(FIELDS), default="classify")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20, help="how long py-spy records")
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for the product (repeatable)")
    parser.add_argument("--top", type=int, default=15, help="frames listed per process")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (its share too)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("profile-out"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    report = profile(args, work)
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
