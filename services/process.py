"""Child processes that do not outlive the process that started them.

The api's embedded job worker (services/jobs/embedded.py) and every process of the native production
topology (deploy/runner.py) are started with :func:`die_with_parent`: on Linux the kernel sends the
child SIGTERM when its parent dies, even by SIGKILL, when no shutdown code runs. Without it the
children go on running, holding their ports, with nobody left to stop them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

_PR_SET_DEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for ``sig`` when the parent dies (Linux); None elsewhere.

    The kernel watches the thread that forked, not the whole parent: start children from a thread that
    lives as long as the parent (the main thread, or a supervisor thread of the same lifetime).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # loaded before the fork

    def preexec() -> None:
        libc.prctl(_PR_SET_DEATHSIG, sig)

    return preexec
