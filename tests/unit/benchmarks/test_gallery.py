"""benchmarks/gallery.py's gallery writer (the served measurement reads what it writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import gallery
from services.index.gallery import GalleryIndex


def test_write_unindexed_stores_every_vector_in_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "gallery.sqlite3"
    path.write_bytes(b"an older run's file")  # replaced, not appended to
    vectors = gallery.normalise(np.random.default_rng(0).normal(size=(25_000, 8)).astype(np.float32))
    gallery.write_unindexed(vectors, "embedder:v9", path)
    store = GalleryIndex(path)
    try:
        assert len(store) == 25_000 and store.embedder == "embedder:v9"
        assert store.search(vectors[12_345:12_346], 1)[0][0].id == "g12345"
    finally:
        store.close()
