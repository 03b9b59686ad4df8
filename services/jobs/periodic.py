"""A daemon thread that runs one action now and then every ``interval_s`` until stopped.

The job workers' heartbeat and their housekeeping run on it. An action that raises is logged and tried
again at the next interval: the database may be away for a while, and the worker goes on meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``action`` every ``interval_s`` seconds on a daemon thread named ``name``."""

    def __init__(self, name: str, action: Callable[[], object], *, interval_s: float) -> None:
        self.name, self.action, self.interval_s = name, action, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.action()
            except Exception:
                log.warning("%s failed", self.name, exc_info=True)
            if self._stop.wait(self.interval_s):
                return

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout_s`` for a running action to finish."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
