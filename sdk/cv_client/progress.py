"""The progress bar of a job being waited for: tqdm when it is installed and asked for, else nothing."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Shows ``done`` of ``total`` items on stderr."""

    def __init__(self, enabled: bool, *, description: str) -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # the optional extra `cv-client[progress]` is not installed
                return
            self._bar = tqdm(total=0, desc=description, unit="img", file=sys.stderr, leave=True)

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
