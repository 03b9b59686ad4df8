"""services/process.py: the fixed mmap threshold, seen through glibc's own accounting in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.process import fix_mmap_threshold

REPO = Path(__file__).resolve().parents[3]

# Frees a 1 MiB block (glibc's dynamic threshold then rises past 1 MiB), allocates another and prints whether the
# threshold was fixed and how many mapped blocks that second allocation added (glibc's mallinfo2().hblks).
PROBE = """
import ctypes, sys
from services.process import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
fixed = fix_mmap_threshold(int(sys.argv[1]))
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(fixed, libc.mallinfo2().hblks - before)
libc.free(block)
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc only"
)


def _probe(threshold: int, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(threshold)],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@glibc
def test_a_fixed_threshold_keeps_mapping_large_blocks_after_one_is_freed() -> None:
    assert _probe(131072) == "True 1"


@glibc
def test_without_it_glibc_raises_the_threshold_and_the_next_block_comes_from_the_heap() -> None:
    assert _probe(0) == "False 0"


@glibc
def test_the_users_own_malloc_setting_wins() -> None:
    assert _probe(131072, MALLOC_MMAP_THRESHOLD_="4194304") == "False 0"


def test_zero_leaves_the_c_library_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fix_mmap_threshold(0) is False
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fix_mmap_threshold(131072) is False


# Grows the heap by 200 blocks of 1 MiB, all resident, frees all but the last (which pins the heap's top, so glibc's
# own top trim cannot return them), then prints the RSS in MiB before and after one trim_heap_if_due().
TRIM_PROBE = """
import ctypes, sys
from services.process import configure_heap, trim_heap_if_due

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 2**20

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
configure_heap(0, float(sys.argv[1]))
libc.free(libc.malloc(1 << 21))  # glibc's dynamic threshold rises past 1 MiB: the blocks below come from the heap
blocks = [libc.malloc(1 << 20) for _ in range(200)]
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
for block in blocks[:-1]:
    libc.free(block)
before = rss()
trimmed = trim_heap_if_due()
print(trimmed, before, rss())
"""


@glibc
@pytest.mark.parametrize("interval", ["1.0", "0"])
def test_a_trim_gives_the_free_heap_back_to_the_kernel(interval: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE, interval],
        env={**clean, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    trimmed, before, after = done.stdout.split()
    if interval == "0":
        assert trimmed == "False" and int(before) - int(after) < 10  # kept: what the trim is for
    else:
        assert trimmed == "True" and int(before) - int(after) > 150  # ~199 MiB of free heap pages returned


def test_trimming_waits_its_interval_and_zero_turns_it_off() -> None:
    from services import process

    try:
        process.configure_heap(0, 3600.0)
        glibc = process._Trim.call is not None
        assert process.heap_trim_due() is glibc  # what a caller on the event loop asks before it hands the trim off
        assert process.trim_heap_if_due() is glibc
        assert process.heap_trim_due() is False and process.trim_heap_if_due() is False  # within the interval
        process.configure_heap(0, 0.0)
        assert process.heap_trim_due() is False and process.trim_heap_if_due() is False
    finally:
        process.configure_heap(0, 0.0)
        process._Trim.last = float("-inf")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    import gc

    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps a collector that sees everything


def test_freeze_startup_objects_puts_whats_alive_out_of_the_collectors_reach(unfrozen: None) -> None:
    import gc

    from services.process import freeze_startup_objects

    kept = [[i] for i in range(1000)]  # alive at "start-up"
    frozen = freeze_startup_objects()
    assert frozen >= len(kept)
    assert gc.get_freeze_count() > 0  # (frozen objects that die since leave it: the count only goes down)
    assert not any(o is kept[0] for o in gc.get_objects())  # a collection walks none of them now
    gc.unfreeze()
    assert any(o is kept[0] for o in gc.get_objects())


def test_freeze_startup_objects_can_be_turned_off(unfrozen: None) -> None:
    import gc

    from services.process import freeze_startup_objects

    assert freeze_startup_objects(enabled=False) == 0
    assert gc.get_freeze_count() == 0
