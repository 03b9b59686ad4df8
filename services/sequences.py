"""Consecutive slices of a sequence: a job's chunks, ids per SQL statement, rows per insert, images per batch.

``itertools.batched`` arrives with Python 3.12 and makes tuples; this one keeps the sequence's own type
(a list slice stays a list) and refuses a size that would never end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    if size < 1:
        raise ValueError("batch size must be >= 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]
