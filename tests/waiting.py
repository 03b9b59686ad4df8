"""Wait for something another process does: a log line, a row, a health change.

A server writes its request log line after the answer has gone out, and a worker commits after its
task returns, so a test that reads right after a response races them. It polls instead, and fails
with what it waited for and, where given, what the other side printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object],
    timeout_s: float = 30.0,
    what: str = "condition",
    interval_s: float = 0.1,
    context: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` until it is truthy; after ``timeout_s`` raise AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(interval_s)
