"""services/sequences.py: consecutive slices."""

from __future__ import annotations

import pytest

from services.sequences import batched


def test_batched_slices_keep_their_type_and_refuse_empty_batches() -> None:
    assert list(batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(batched(range(5), 3)) == [range(0, 3), range(3, 5)]
    assert list(batched([], 4)) == []
    with pytest.raises(ValueError, match=">= 1"):
        list(batched([1], 0))
