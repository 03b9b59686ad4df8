"""What the services' processes ask of the C library: children that die with their parent, and a heap policy.

The api's embedded job worker (services/jobs/embedded.py) and every process of the native production
topology (deploy/runner.py) are started with :func:`die_with_parent`: on Linux the kernel sends the
child SIGTERM when its parent dies, even by SIGKILL, when no shutdown code runs. Without it the
children go on running, holding their ports, with nobody left to stop them.

The api, the model services and the job workers call :func:`configure_heap` at start: glibc's heap then goes back
to the kernel after a batch (:func:`trim_heap_if_due`, ``CV_MALLOC_TRIM_INTERVAL_S``), and, when asked, large buffers
are mapped on their own (``CV_MALLOC_MMAP_THRESHOLD_BYTES``). benchmarks/reports/memory_detector.md measured both.
Once started they call :func:`freeze_startup_objects`: Python's collector no longer walks what start-up made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

_PR_SET_DEATHSIG = 1
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
# Set by the user in the environment: glibc read it at start, and it wins over the setting.
_GLIBC_ENV = "MALLOC_MMAP_THRESHOLD_"

log = logging.getLogger("services.process")


class _Trim:
    """This process's heap trimming: glibc's ``malloc_trim``, at most once per ``interval_s``."""

    interval_s = 0.0
    last = float("-inf")
    call: Callable[[int], int] | None = None
    lock = threading.Lock()


def _libc(use_errno: bool = False) -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=use_errno)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None:
        return None  # musl and other C libraries have neither mallopt's threshold nor malloc_trim
    try:
        return _libc()
    except OSError:
        return None


def freeze_startup_objects(enabled: bool = True) -> int:
    """Put every object alive now out of the cyclic garbage collector's reach (``gc.freeze``); returns how many.

    A started server holds ~300,000 objects that live as long as it does (modules, the app, the models' Python side,
    SQLAlchemy's and pydantic's tables). Each full collection walked them all: in the api under load one every ~6 s,
    ~185 ms with the GIL held, every request in flight stalled (the p99 at concurrency 16: benchmarks/reports/peers.md).
    Frozen, a collection walks only what was made since. Garbage among them is collected first.
    """
    if not enabled:
        return 0
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up objects frozen", extra={"objects": frozen})
    return frozen


def configure_heap(mmap_threshold: int, trim_interval_s: float) -> None:
    """This process's C heap policy: a fixed mmap threshold (0: glibc's own) and trimming after batches (0: never)."""
    fix_mmap_threshold(mmap_threshold)
    libc = _glibc() if trim_interval_s > 0 else None
    _Trim.call = libc.malloc_trim if libc is not None else None
    _Trim.interval_s = trim_interval_s if libc is not None else 0.0


def heap_trim_due() -> bool:
    """Whether :func:`trim_heap_if_due` would trim now (a cheap look, no lock: a caller on the event loop asks
    before it hands the trim to a thread)."""
    return _Trim.call is not None and time.monotonic() - _Trim.last >= _Trim.interval_s


def trim_heap_if_due() -> bool:
    """Give the heap's free pages back to the kernel, unless it was done less than the interval ago.

    glibc keeps memory freed inside its heaps (a decoded photo, a batch's tensors) for later allocations; it returns
    only the free top of the main heap, and only past ``M_TRIM_THRESHOLD``. After a burst of large images the process
    stays near its largest burst. ``malloc_trim(0)`` also releases the whole free pages inside every heap
    (``madvise(MADV_DONTNEED)``); it walks the free lists, about a millisecond here, so it runs at most once per
    interval, after a batch, by whichever thread gets there first.

    Returns:
        Whether it trimmed now.
    """
    call = _Trim.call
    if call is None or not heap_trim_due() or not _Trim.lock.acquire(blocking=False):
        return False
    try:
        _Trim.last = time.monotonic()
        call(0)
        return True
    finally:
        _Trim.lock.release()


def fix_mmap_threshold(threshold: int) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes (and stop glibc from raising it); 0 leaves it alone.

    glibc serves an allocation of at least the threshold with a mapping of its own, returned to the kernel on free.
    By default the threshold starts at 128 KiB and rises to the size of each such block freed (up to 32 MiB), so
    after a few large images every later one comes from the heap, whose top the kernel only gets back when nothing
    above it is in use: a process that decodes photos and batches them grows towards its largest burst and stays
    there. A fixed threshold costs a page fault per 4 KiB of each large buffer: 20 % more CPU per image in the
    detector worker (benchmarks/reports/memory_detector.md), which is why it is off by default.

    Returns:
        Whether the threshold was set (False: 0, not glibc, or ``MALLOC_MMAP_THRESHOLD_`` set by the user).
    """
    libc = _glibc() if threshold > 0 and _GLIBC_ENV not in os.environ else None
    if libc is None:
        return False
    if libc.mallopt(_M_MMAP_THRESHOLD, threshold) != 1:
        log.warning("mallopt refused the mmap threshold", extra={"threshold": threshold})
        return False
    return True


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for ``sig`` when the parent dies (Linux); None elsewhere.

    The kernel watches the thread that forked, not the whole parent: start children from a thread that
    lives as long as the parent (the main thread, or a supervisor thread of the same lifetime).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = _libc(use_errno=True)  # loaded before the fork

    def preexec() -> None:
        libc.prctl(_PR_SET_DEATHSIG, sig)

    return preexec
