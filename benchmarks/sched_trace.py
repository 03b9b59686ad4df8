"""Where a server's cores go idle under load: the kernel's scheduler events on its threads (perf).

Starts each server named (benchmarks/peers.py's names: ``product``, ``ort-int8``, ...) in turn, as peers.py does,
warms it up, then records ``perf record -a -g -e sched:sched_switch -e sched:sched_wakeup`` for ``--seconds`` while the
same load generator sends one route at one concurrency. From the events:

- each thread's share of the wall time running, runnable (woken or preempted, waiting for a core) and asleep, by
  what it sleeps in: ``epoll`` (waiting for its sockets), ``futex`` (a lock, a condition, or the GIL), other;
- each core's idle time, split by whether a thread of the server or of the load generator was runnable meanwhile
  (queued on the other core) or none was (nothing to run);
- each kind of sleep of at least 10 a second: how often, how long, and whose wake-up ended it.

Writes benchmarks/reports/sched_trace.md and .json. Needs perf (Debian's ``linux-perf``) and the rights to trace the
whole machine (root, or ``kernel.perf_event_paranoid`` <= 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, photos, table  # noqa: E402
from benchmarks.loopback import launch, settle  # noqa: E402
from benchmarks.peers import FIELDS, _load, detect_photo, parse_args  # noqa: E402
from benchmarks.peers_servers import start_timeout, targets  # noqa: E402
from deploy.topology import free_port  # noqa: E402

log = logging.getLogger("benchmarks.sched_trace")
# "python 11492 [001]  1358.495958: sched:sched_wakeup: comm=python pid=11509 prio=120 target_cpu=001"
HEADER = re.compile(
    r"^\s*.+?\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<t>[\d.]+):\s+sched:(?P<event>\w+):\s+(?P<args>.*)"
)
SWITCH = re.compile(r"prev_pid=(?P<prev>\d+) prev_prio=\d+ prev_state=(?P<state>\S+) ==> .*next_pid=(?P<next>\d+)")
WAKEUP = re.compile(r" pid=(?P<tid>\d+) prio=")
SETTLE_S = 2.0
STATES = ("running", "runnable", "asleep: epoll", "asleep: futex", "asleep: other")


@dataclass
class Event:
    tid: int  # the thread the core was running: for a wake-up, the waker (0: the idle task, the waker unknown)
    cpu: int
    t: float
    kind: str  # sched_switch | sched_wakeup
    args: str
    stack: list[str] = field(default_factory=list)


def events(lines: Iterable[str]) -> Iterable[Event]:
    """`perf script` output: one event per header line, with the kernel and user frames that follow it."""
    current: Event | None = None
    for line in lines:
        match = HEADER.match(line)
        if match:
            if current is not None:
                yield current
            current = Event(int(match["tid"]), int(match["cpu"]), float(match["t"]), match["event"], match["args"])
        elif current is not None and line.strip():
            current.stack.append(line.strip())
    if current is not None:
        yield current


def sleep_reason(stack: list[str]) -> str:
    """What a thread that left its core asleep waits in, from the kernel frames of the switch."""
    frames = " ".join(stack)
    if "epoll_wait" in frames:
        return "asleep: epoll"
    if "futex" in frames:
        return "asleep: futex"
    return "asleep: other"


@dataclass
class Trace:
    """Seconds per (group, state) of the watched threads, and the cores' idle seconds by what was runnable."""

    seconds: float = 0.0
    cores: int = 0
    states: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    idle: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # ours waiting | nothing runnable
    waiting: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # idle while a group had one queued
    # (group, what it slept in) -> each completed sleep: (seconds, the waker's group)
    sleeps: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))


def analyse(lines: Iterable[str], groups: dict[int, str]) -> Trace:
    """Replay the switches and wake-ups: ``groups`` maps each watched thread id to its group's name.

    A thread's state is known from its first event on; a core's from its first switch. Time before either is left
    out (the first milliseconds of the trace).
    """
    trace = Trace()
    state: dict[int, str] = {}
    running: dict[int, int] = {}  # core -> thread id (0: idle)
    asleep: dict[int, tuple[float, str]] = {}  # thread id -> when it left its core asleep, and in what
    last: float | None = None
    for event in events(lines):
        if last is not None:
            dt = event.t - last
            trace.seconds += dt
            for tid, now in state.items():
                trace.states[groups[tid]][now] += dt
            queued = {groups[tid] for tid, now in state.items() if now == "runnable"}
            for current in running.values():
                if current == 0:
                    trace.idle["ours waiting" if queued else "nothing of ours runnable"] += dt
                    for group in queued:
                        trace.waiting[group] += dt
        last = event.t
        if event.kind == "sched_switch":
            switch = SWITCH.search(event.args)
            if switch is None:
                continue
            prev, following = int(switch["prev"]), int(switch["next"])
            if prev in groups:
                state[prev] = "runnable" if switch["state"].startswith("R") else sleep_reason(event.stack)
                if state[prev] != "runnable":
                    asleep[prev] = (event.t, state[prev])
            if following in groups:
                state[following] = "running"
            running[event.cpu] = following
        elif event.kind == "sched_wakeup":
            wakeup = WAKEUP.search(event.args)
            tid = int(wakeup["tid"]) if wakeup else -1
            if tid in groups and state.get(tid) != "running":
                state[tid] = "runnable"
            if tid in asleep:
                since, reason = asleep.pop(tid)
                # A wake-up the kernel queued to an idle core is recorded there, as the idle task's: waker unknown.
                waker = groups.get(event.tid, "other threads" if event.tid else "unknown (delivered on an idle core)")
                trace.sleeps[groups[tid], reason].append((event.t - since, waker))
    trace.cores = len(running)
    return trace


def _role(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    for mark, name in (("_bentoml_impl.worker", "api worker"), ("celery", "job worker"), ("uvicorn", "uvicorn")):
        if mark in command:
            return name
    return "bentoml serve" if "bentoml" in command else process.name()


def thread_groups(root: psutil.Process, client: psutil.Process) -> dict[int, str]:
    """Every thread of the server's tree and of this load generator, by process role: main thread, other threads."""
    groups = {thread.id: "load generator" for thread in client.threads()}
    for process in [root, *root.children(recursive=True)]:
        role = _role(process)
        for thread in process.threads():
            groups[thread.id] = f"{role}: {'main thread' if thread.id == process.pid else 'other threads'}"
    return groups


def record(seconds: float, out: Path) -> list[str]:
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    events = ["-e", "sched:sched_switch", "-e", "sched:sched_wakeup"]
    subprocess.run([perf, "record", "-q", "-a", "-g", *events, "-o", str(out), "sleep", str(seconds)], check=True)
    script = subprocess.run([perf, "script", "-i", str(out)], check=True, capture_output=True, text=True)
    return script.stdout.splitlines()


def trace_server(name: str, plan: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    (target,) = [t for t in targets(plan, workdir) if t.name == name]
    route = plan.route if plan.route in target.routes else next(iter(target.routes))
    path, jpeg = target.routes[route], photos()["chelsea"] if route == "classify" else detect_photo(None)
    log.info("%s: starting (%s)", name, target.label)
    with launch(target, workdir, free_port(), start_timeout(target)) as (url, root):
        settle(root)
        asyncio.run(_load(url, path, FIELDS[route], jpeg, plan.concurrency, plan.warmup))
        groups = thread_groups(root, psutil.Process())
        lines: list[str] = []

        def recorder() -> None:
            time.sleep(SETTLE_S)  # the load's own start-up (connections, the first batches) left out
            lines.extend(record(plan.seconds, workdir / f"{name}.perf"))

        thread = threading.Thread(target=recorder)
        started = time.perf_counter()
        total = int(plan.rate * (plan.seconds + SETTLE_S + 3))  # the load outlasts the recording
        thread.start()
        latencies, statuses, seconds, _ = asyncio.run(_load(url, path, FIELDS[route], jpeg, plan.concurrency, total))
        thread.join()
    trace = analyse(lines, groups)
    log.info("  %d answers in %.1f s (%.0f req/s), %s", len(latencies), seconds, len(latencies) / seconds, statuses)
    return summary(name, target.label, route, trace, len(latencies) / seconds, time.perf_counter() - started)


def summary(name: str, label: str, route: str, trace: Trace, throughput: float, wall: float) -> dict[str, Any]:
    seconds = max(trace.seconds, 1e-9)
    capacity = seconds * max(trace.cores, 1)
    threads = {
        group: {state: round(spent.get(state, 0.0) / seconds, 3) for state in STATES}
        for group, spent in sorted(trace.states.items())
        if spent.get("running", 0.0) / seconds >= 0.01
    }
    sleeps = {}
    for (group, reason), ended in sorted(trace.sleeps.items()):
        if len(ended) / seconds < 10:
            continue
        durations = sorted(d for d, _ in ended)
        wakers: dict[str, int] = defaultdict(int)
        for _, waker in ended:
            wakers[waker] += 1
        sleeps[f"{group} / {reason}"] = {
            "per_s": round(len(ended) / seconds, 1),
            "p50_us": round(durations[len(durations) // 2] * 1e6),
            "p90_us": round(durations[int(len(durations) * 0.9)] * 1e6),
            "ended_by": {w: round(n / len(ended), 2) for w, n in sorted(wakers.items(), key=lambda kv: -kv[1])},
        }
    return {
        "server": name,
        "label": label,
        "route": route,
        "req_per_s": round(throughput, 1),
        "traced_s": round(trace.seconds, 2),
        "cores": trace.cores,
        "idle": round(sum(trace.idle.values()) / capacity, 3),
        "idle_ours_waiting": round(trace.idle.get("ours waiting", 0.0) / capacity, 3),
        "idle_nothing_runnable": round(trace.idle.get("nothing of ours runnable", 0.0) / capacity, 3),
        "idle_while_queued": {
            group: round(s / capacity, 3) for group, s in sorted(trace.waiting.items(), key=lambda kv: -kv[1])
        },
        "threads": threads,
        "sleeps": sleeps,
        "wall_s": round(wall, 1),
    }


def render(results: dict[str, Any]) -> str:
    plan = results["plan"]
    lines = [
        "# Where the cores go idle under load: the scheduler's view",
        "",
        "Made by `python benchmarks/sched_trace.py` (perf's sched_switch and sched_wakeup events, with kernel stacks, "
        f"over {plan['seconds']} s of {plan['route']} at concurrency {plan['concurrency']}, each server started "
        "in turn as benchmarks/peers.py starts it, with the same load generator). A thread is *runnable* from its "
        "wake-up (or preemption) until a core runs it; a core is *idle* when it runs nothing. *Idle, ours waiting*: "
        "a core idled while a thread of the server or of the load generator was runnable, queued on the other core; "
        "*idle, nothing runnable*: none of them had anything to run.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in results["machine"].items()],
        "",
        "## Cores",
        "",
    ]
    rows = [
        [r["label"], r["req_per_s"], f"{r['idle']:.3f}", f"{r['idle_ours_waiting']:.3f}",
         f"{r['idle_nothing_runnable']:.3f}",
         ", ".join(f"{group} {share:.3f}" for group, share in r["idle_while_queued"].items() if share >= 0.005)]
        for r in results["servers"]
    ]  # fmt: skip
    headers = ["server", "req/s", "idle (share of the cores)", "idle, ours waiting", "idle, nothing runnable",
               "idle while this group had a thread queued"]  # fmt: skip
    lines += [table(headers, rows), "", "## Threads (share of the wall time)", ""]
    for r in results["servers"]:
        rows = [[group, *(f"{shares[s]:.2f}" for s in STATES)] for group, shares in r["threads"].items()]
        lines += [f"### {r['label']}", "", table(["threads", *STATES], rows), ""]
    lines += [
        "## Sleeps (those of at least 10 a second: how long, and which thread's wake-up ended them)",
        "",
    ]
    for r in results["servers"]:
        rows = [
            [what, f"{s['per_s']:.0f}", s["p50_us"], s["p90_us"],
             ", ".join(f"{waker} {share:.2f}" for waker, share in list(s["ended_by"].items())[:3])]
            for what, s in r.get("sleeps", {}).items()
        ]  # fmt: skip
        lines += [f"### {r['label']}", "", table(["threads / in", "per second", "p50 us", "p90 us", "ended by"], rows)]
        lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in results["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--servers", nargs="+", default=["product", "ort-int8"], help="benchmarks/peers.py's server names")
    add("--route", choices=("classify", "detect"), default="classify")
    add("--concurrency", type=int, default=16)
    add("--seconds", type=float, default=4.0, help="how long perf records (the events of 2 cores: ~1 MB a second)")
    add("--warmup", type=int, default=300)
    add("--rate", type=float, default=300.0, help="the most req/s expected: sizes the load to outlast the recording")
    add("--note", dest="notes", action="append", default=[])
    add("--out", type=Path, default=REPO / "benchmarks" / "reports" / "sched_trace.md")
    args = parser.parse_args(argv)
    peers_plan = parse_args(["--only", *args.servers])
    plan = argparse.Namespace(**{**vars(peers_plan), **vars(args)})
    with tempfile.TemporaryDirectory(prefix="cv-sched-") as tmp:
        servers = [trace_server(name, plan, Path(tmp)) for name in args.servers]
    results = {
        "machine": machine_facts(),
        "plan": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "servers": servers,
        "notes": args.notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
