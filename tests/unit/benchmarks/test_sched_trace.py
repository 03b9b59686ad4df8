"""benchmarks/sched_trace.py: the replay of perf's switches and wake-ups into thread states and idle cores."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks import sched_trace
from benchmarks.sched_trace import analyse, render, summary, thread_groups

FUTEX = ["ffffffff81450196 futex_do_wait+0x46 ([kernel.kallsyms])", "85f16 __futex_abstimed_wait_common+0xc6 (libc)"]
EPOLL = ["ffffffff81758d7e do_epoll_wait+0x55e ([kernel.kallsyms])", "108f36 epoll_wait+0x56 (libc.so.6)"]


def _switch(cpu: int, t: float, prev: int, state: str, following: int, stack: list[str] | None = None) -> list[str]:
    head = (
        f"python {prev} [{cpu:03d}] {t:.6f}: sched:sched_switch: prev_comm=python prev_pid={prev} prev_prio=120 "
        f"prev_state={state} ==> next_comm=python next_pid={following} next_prio=120"
    )
    return [head, *(f"\t{frame}" for frame in stack or []), ""]


def _wakeup(cpu: int, t: float, tid: int, waker: int = 1) -> list[str]:
    event = f"sched:sched_wakeup: comm=python pid={tid} prio=120 target_cpu={cpu:03d}"
    head = f"python {waker} [{cpu:03d}] {t:.6f}: {event}"
    return [head, ""]


GROUPS = {10: "api worker: main thread", 11: "api worker: other threads", 20: "load generator"}


def _trace() -> list[str]:
    return [
        *_switch(0, 0.000, 0, "R", 10),
        *_switch(1, 0.000, 0, "R", 11),
        *_switch(1, 0.010, 11, "S", 0, FUTEX),  # the run thread sleeps on a futex; core 1 idles with nothing queued
        *_wakeup(0, 0.012, 20),  # the load generator is queued on core 0 while core 1 idles
        *_switch(0, 0.015, 10, "R", 20),  # the event loop preempted, queued in its turn
        *_switch(1, 0.020, 0, "R", 10),  # core 1 at last runs it
        *_switch(0, 0.030, 20, "S", 0, EPOLL),  # the load generator waits for its sockets; nothing queued
        *_wakeup(0, 0.040, 11, waker=10),  # the event loop ends the run thread's futex sleep after 30 ms
    ]


def test_thread_states_and_idle_cores_are_replayed_from_the_events() -> None:
    trace = analyse(_trace(), GROUPS)

    assert trace.seconds == pytest.approx(0.040) and trace.cores == 2
    main, run, client = (trace.states[GROUPS[tid]] for tid in (10, 11, 20))
    assert main == pytest.approx({"running": 0.035, "runnable": 0.005})
    assert run == pytest.approx({"running": 0.010, "asleep: futex": 0.030})
    assert client == pytest.approx({"runnable": 0.003, "running": 0.015, "asleep: epoll": 0.010})  # known from 0.012
    assert trace.idle == pytest.approx({"nothing of ours runnable": 0.012, "ours waiting": 0.008})
    assert trace.waiting == pytest.approx({"load generator": 0.003, "api worker: main thread": 0.005})
    # Only completed sleeps count: the load generator's epoll sleep from 0.030 never ended in the trace.
    assert trace.sleeps == {("api worker: other threads", "asleep: futex"): [(pytest.approx(0.030), GROUPS[10])]}


def test_the_summary_gives_shares_of_the_cores_and_of_the_wall_time() -> None:
    result = summary("product", "this product", "classify", analyse(_trace(), GROUPS), 200.0, 9.0)

    assert (result["idle"], result["idle_ours_waiting"], result["idle_nothing_runnable"]) == (0.25, 0.1, 0.15)
    assert list(result["idle_while_queued"]) == ["api worker: main thread", "load generator"]  # the longer first
    assert result["threads"]["api worker: other threads"]["asleep: futex"] == 0.75
    assert result["sleeps"] == {
        "api worker: other threads / asleep: futex": {
            "per_s": 25.0,  # one sleep in 0.04 s
            "p50_us": 30000,
            "p90_us": 30000,
            "ended_by": {"api worker: main thread": 1.0},
        }
    }
    report = render(
        {
            "machine": {"nproc": 2},
            "plan": {"seconds": "4.0", "route": "classify", "concurrency": "16"},
            "servers": [result],
            "notes": [],
        }
    )
    queued = "api worker: main thread 0.063, load generator 0.037"
    assert f"| this product | 200.0 | 0.250 | 0.100 | 0.150 | {queued} |" in report


def test_the_committed_report_renders_again_from_its_results() -> None:
    report = Path(__file__).resolve().parents[3] / "benchmarks" / "reports" / "sched_trace.md"
    results = json.loads(report.with_suffix(".json").read_text())
    assert render(results) == report.read_text()
    product, peer = results["servers"]
    assert (product["server"], peer["server"]) == ("product", "ort-int8")
    for server in (product, peer):  # the idle split adds up, each share of the same cores
        assert server["idle"] == pytest.approx(server["idle_ours_waiting"] + server["idle_nothing_runnable"], abs=0.002)


def test_threads_are_grouped_by_process_role_main_thread_first() -> None:
    started, done = threading.Event(), threading.Event()
    native: list[int] = []

    def helper() -> None:
        native.append(threading.get_native_id())
        started.set()
        done.wait(10)

    thread = threading.Thread(target=helper)
    thread.start()
    started.wait(10)
    try:
        me = psutil.Process()
        groups = thread_groups(me, me)  # the server's roles win over the load generator's label
    finally:
        done.set()
        thread.join()
    role = groups[threading.get_native_id()].removesuffix(": main thread")  # pytest runs tests in its main thread
    assert role != groups[threading.get_native_id()]
    assert groups[native[0]] == f"{role}: other threads"


def test_recording_without_perf_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sched_trace.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="linux-perf"):
        sched_trace.record(1.0, tmp_path / "trace.perf")


def test_main_traces_each_server_and_writes_the_report_beside_its_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    traced: list[tuple[str, str, int]] = []

    def trace_server(name: str, plan: Any, workdir: Path) -> dict[str, Any]:
        traced.append((name, plan.route, plan.concurrency))
        return summary(name, f"label of {name}", plan.route, analyse(_trace(), GROUPS), 100.0, 5.0)

    monkeypatch.setattr(sched_trace, "trace_server", trace_server)
    out = tmp_path / "sched.md"
    assert sched_trace.main(["--servers", "product", "ort-int8", "--concurrency", "8", "--out", str(out)]) == 0
    assert traced == [("product", "classify", 8), ("ort-int8", "classify", 8)]
    results = json.loads(out.with_suffix(".json").read_text())
    assert [s["server"] for s in results["servers"]] == ["product", "ort-int8"]
    assert out.read_text() == render(results)
