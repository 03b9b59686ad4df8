"""Resident memory of process trees, sampled in a background thread; each process named by its role.

A :class:`Sampler` watches named roots (``bentoml serve`` of ``make serve``, or each process of the native
topology) and every ``interval_s`` records RSS, PSS and USS (MB, ``/proc/<pid>/smaps_rollup`` through psutil)
of every process under them, and its anonymous RSS (``RssAnon`` of ``/proc/<pid>/status``: heap and stacks,
without the file pages a process maps, such as Prometheus's memory-mapped TSDB chunks, which the kernel can drop
and reread). :func:`role_of` names a process from its command line (BentoML's supervisor, a service worker,
Celery's main process and pool children, Traefik, ...). :func:`summarise` and :func:`growth` turn samples into
per-phase peaks and soak growth; they are pure and unit-tested.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024
FIELDS = ("rss", "pss", "uss", "anon")


def _after(cmdline: list[str], flag: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return cmdline[cmdline.index(flag) + 1]
    return None


def role_of(cmdline: list[str], parent_cmdline: list[str] | None = None) -> str:
    """What a process of the serving stack is, from its command line (and its parent's)."""
    joined = " ".join(cmdline)
    if "_bentoml_impl.worker.service" in joined:
        service = _after(cmdline, "--service-name") or "service"
        return f"{service} worker {_after(cmdline, '--worker-id') or '?'}"
    if any(Path(a).name == "bentoml" and cmdline[i + 1 : i + 2] == ["serve"] for i, a in enumerate(cmdline)):
        return f"bentoml supervisor ({_after(cmdline, 'serve') or '?'})"
    if "celery" in joined:
        if "beat" in cmdline:
            return "celery beat"
        if parent_cmdline is not None and "celery" in " ".join(parent_cmdline) and "worker" in parent_cmdline:
            return "celery pool child"
        return "celery worker (main)" + (" + beat" if "--beat" in cmdline else "")
    if "gateway" in cmdline and "serve" in cmdline:
        return "auth (gateway serve)"
    if "multiprocessing" in joined and ("resource_tracker" in joined or "semaphore_tracker" in joined):
        return "multiprocessing resource tracker"
    if "services.index.build_gallery" in joined:
        return "build_gallery"
    name = Path(cmdline[0]).name if cmdline else "?"
    return name if "python" not in name else " ".join(cmdline[1:3])


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    memory: dict[str, dict[str, float]]  # role -> rss/pss/uss in MB


@dataclass
class Sampler:
    """Samples every process under ``roots`` (name -> pid) until :meth:`stop`; roles are prefixed with the root."""

    roots: dict[str, int]
    interval_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    torch: dict[str, bool] = field(default_factory=dict)  # role -> torch's libraries are mapped in it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def start(self) -> Sampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def now(self) -> float:
        return time.monotonic() - self._started

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        """Mark the samples taken meanwhile as phase ``name``."""
        t0 = self.now()
        try:
            yield
        finally:
            self.phases.append((name, t0, self.now()))

    def _run(self) -> None:
        while not self._stop.is_set():
            t = self.now()
            self.samples.append(Sample(t, self.snapshot()))
            self._stop.wait(max(0.0, self.interval_s - (self.now() - t)))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """role -> memory of every live process under the roots now."""
        out: dict[str, dict[str, float]] = {}
        for root_name, pid in list(self.roots.items()):
            for role, proc in tree_roles(pid, prefix=root_name):
                with contextlib.suppress(psutil.Error):
                    info = proc.memory_full_info()
                    out[role] = {f: getattr(info, f, 0) / MB for f in FIELDS if f != "anon"}
                    out[role]["anon"] = rss_anon_mb(proc.pid)
                    if role not in self.torch:
                        self.torch[role] = maps_torch(proc.pid)
        return out


def rss_anon_mb(pid: int) -> float:
    """``RssAnon`` of ``pid`` in MB (0 where the kernel does not report it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_roles(pid: int, prefix: str = "") -> list[tuple[str, psutil.Process]]:
    """(role, process) for ``pid`` and every process under it; repeated roles get #2, #3 (by pid)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *sorted(root.children(recursive=True), key=lambda p: p.pid)]
    except psutil.Error:
        return []
    cmdlines: dict[int, list[str]] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            cmdlines[p.pid] = p.cmdline()
    seen: Counter[str] = Counter()
    named = []
    for p in procs:
        if p.pid not in cmdlines:
            continue
        with contextlib.suppress(psutil.Error):
            role = role_of(cmdlines[p.pid], cmdlines.get(p.ppid()))
            seen[role] += 1
            role = role if seen[role] == 1 else f"{role} #{seen[role]}"
            named.append((f"{prefix}: {role}" if prefix else role, p))
    return named


def maps_torch(pid: int) -> bool:
    """Whether torch's shared libraries are mapped into process ``pid`` (i.e. it imported torch)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def in_window(samples: list[Sample], t0: float, t1: float) -> list[Sample]:
    return [s for s in samples if t0 <= s.t <= t1]


def summarise(samples: list[Sample], phases: list[tuple[str, float, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """phase -> role -> mean and max of rss/pss/uss over the phase's samples."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, t0, t1 in phases:
        window = in_window(samples, t0, t1)
        roles = sorted({r for s in window for r in s.memory})
        out[name] = {}
        for role in roles:
            # Samples of an earlier run have no "anon".
            values = {f: [s.memory[role][f] for s in window if f in s.memory.get(role, {})] for f in FIELDS}
            values = {f: v for f, v in values.items() if v}
            out[name][role] = {
                **{f"{f}_mean": sum(v) / len(v) for f, v in values.items()},
                **{f"{f}_max": max(v) for f, v in values.items()},
            }
    return out


def group_of(role: str) -> str:
    """The service a role belongs to: the topology's process name, or the BentoML service of a worker."""
    if ": " in role:
        return role.split(": ", 1)[0]
    if " worker " in role and not role.startswith("celery"):
        return role.split(" worker ", 1)[0]
    return role.split(" #", 1)[0]


def grouped(per_role: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Sum each field over the roles of a group (a process tree's total)."""
    out: dict[str, dict[str, float]] = {}
    for role, values in per_role.items():
        total = out.setdefault(group_of(role), dict.fromkeys(values, 0.0))
        for k, v in values.items():
            total[k] += v
    return out


def growth(samples: list[Sample], start_s: float, end_s: float, window_s: float = 60.0) -> dict[str, dict[str, float]]:
    """Per role: mean RSS/USS/anonymous RSS over the first ``window_s`` after ``start_s`` vs the last ``window_s``."""
    first, last = in_window(samples, start_s, start_s + window_s), in_window(samples, end_s - window_s, end_s)
    out: dict[str, dict[str, float]] = {}
    for role in sorted({r for s in first for r in s.memory} & {r for s in last for r in s.memory}):
        row: dict[str, float] = {}
        for f in ("rss", "uss", "anon"):
            a = [s.memory[role][f] for s in first if f in s.memory.get(role, {})]
            b = [s.memory[role][f] for s in last if f in s.memory.get(role, {})]
            if not a or not b or not sum(a):
                continue
            before, after = sum(a) / len(a), sum(b) / len(b)
            row |= {f"{f}_first": before, f"{f}_last": after, f"{f}_growth_pct": 100 * (after - before) / before}
        out[role] = row
    return out


def series(samples: list[Sample], field_name: str = "rss") -> dict[str, tuple[list[float], list[float]]]:
    """role -> (times, values) for a plot."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for s in samples:
        for role, values in s.memory.items():
            ts, vs = out.setdefault(role, ([], []))
            ts.append(s.t)
            vs.append(values[field_name])
    return out
