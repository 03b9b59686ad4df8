"""GalleryIndex: exact cosine search over FAISS, persisted in SQLite, on a temporary file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.index.gallery import GalleryIndex

DIAGONAL = np.asarray([1.0, 1.0, 0.0]) / np.sqrt(2.0)
VECTORS = np.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], DIAGONAL], dtype=np.float32)
METADATA = [{"name": "x"}, {"name": "y"}, {"name": "xy"}]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "gallery.sqlite3"


@pytest.fixture
def gallery(path: Path) -> Iterator[GalleryIndex]:
    index = GalleryIndex(path, dim=3)
    index.add(VECTORS, METADATA, ids=["x", "y", "xy"])
    yield index
    index.close()


def ranked(index: GalleryIndex, query: list[float], top_k: int = 10) -> list[tuple[str, float]]:
    (hits,) = index.search(np.asarray([query], dtype=np.float32), top_k)
    return [(h.id, round(h.score, 4)) for h in hits]


def test_search_returns_neighbours_in_cosine_order(gallery: GalleryIndex) -> None:
    assert ranked(gallery, [1.0, 0.0, 0.0]) == [("x", 1.0), ("xy", 0.7071), ("y", 0.0)]
    assert ranked(gallery, [0.0, 1.0, 0.0], top_k=2) == [("y", 1.0), ("xy", 0.7071)]


def test_search_returns_metadata(gallery: GalleryIndex) -> None:
    (hits,) = gallery.search(np.asarray([DIAGONAL], dtype=np.float32), 1)
    assert hits[0].id == "xy"
    assert hits[0].metadata == {"name": "xy"}


def test_search_answers_each_query(gallery: GalleryIndex) -> None:
    results = gallery.search(np.asarray([[1, 0, 0], [0, 1, 0]], dtype=np.float32), 1)
    assert [[h.id for h in hits] for hits in results] == [["x"], ["y"]]


def test_search_top_k_larger_than_gallery(gallery: GalleryIndex) -> None:
    assert len(ranked(gallery, [1.0, 0.0, 0.0], top_k=50)) == 3


def test_search_empty_gallery_returns_empty_lists(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "empty.sqlite3", dim=3)
    assert len(index) == 0
    assert index.search(np.asarray([[1, 0, 0], [0, 1, 0]], dtype=np.float32), 5) == [[], []]


def test_add_without_ids_makes_unique_hex_ids(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "ids.sqlite3", dim=3)
    ids = index.add(VECTORS[:2], METADATA[:2])
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(index.contains(i) for i in ids)


def test_add_reshapes_flat_vector(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "flat.sqlite3", dim=3)
    index.add(np.asarray([0.0, 0.0, 1.0]), [{}], ids=["z"])
    assert ranked(index, [0.0, 0.0, 1.0]) == [("z", 1.0)]


def test_contains(gallery: GalleryIndex) -> None:
    assert gallery.contains("x")
    assert not gallery.contains("nope")


def test_index_persists_across_reopen(gallery: GalleryIndex, path: Path) -> None:
    gallery.close()
    reopened = GalleryIndex(path, dim=3)
    assert len(reopened) == 3
    assert ranked(reopened, [1.0, 0.0, 0.0]) == [("x", 1.0), ("xy", 0.7071), ("y", 0.0)]
    assert reopened.search(np.asarray([[0, 1, 0]], dtype=np.float32), 1)[0][0].metadata == {"name": "y"}
    reopened.add(np.asarray([[0.0, 0.0, 1.0]]), [{"name": "z"}], ids=["z"])
    assert ranked(reopened, [0.0, 0.0, 1.0], top_k=1) == [("z", 1.0)]
    reopened.close()


def test_remove_deletes_from_search_and_store(gallery: GalleryIndex, path: Path) -> None:
    assert gallery.remove("x") is True
    assert gallery.remove("x") is False
    assert not gallery.contains("x")
    assert len(gallery) == 2
    assert [i for i, _ in ranked(gallery, [1.0, 0.0, 0.0])] == ["xy", "y"]
    gallery.close()
    reopened = GalleryIndex(path, dim=3)
    assert len(reopened) == 2
    assert not reopened.contains("x")
    reopened.close()


def test_reopen_with_other_dimension_raises(gallery: GalleryIndex, path: Path) -> None:
    gallery.close()
    with pytest.raises(ValueError, match="3-d vectors; expected 4"):
        GalleryIndex(path, dim=4)


def test_add_refuses_metadata_of_other_length(gallery: GalleryIndex) -> None:
    with pytest.raises(ValueError, match="one metadata dict per vector"):
        gallery.add(VECTORS[:2], [{}])
    assert len(gallery) == 3


def test_add_duplicate_id_rolls_back_the_whole_batch(gallery: GalleryIndex, path: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        gallery.add(VECTORS[:2], [{"name": "new"}, {"name": "dup"}], ids=["new", "x"])
    assert len(gallery) == 3
    assert not gallery.contains("new")
    gallery.close()
    assert len(GalleryIndex(path, dim=3)) == 3


# --- the embedding space the vectors are in ---------------------------------------------------


def test_the_first_stamped_add_names_the_embedder_and_others_are_refused(tmp_path: Path) -> None:
    from kernel.errors import GalleryModelMismatch

    index = GalleryIndex(tmp_path / "g.sqlite3", dim=3)
    assert index.embedder is None
    index.add(np.eye(3, dtype=np.float32)[:1], [{}], embedder="embedder:v1")
    index.add(np.eye(3, dtype=np.float32)[1:2], [{}], embedder="embedder:v1")
    with pytest.raises(GalleryModelMismatch, match=r"embedder:v1.*embedder:v2") as refused:
        index.add(np.eye(3, dtype=np.float32)[2:], [{}], embedder="embedder:v2")
    assert refused.value.status_code == 409 and len(index) == 2  # nothing written
    index.close()
    assert GalleryIndex(tmp_path / "g.sqlite3", dim=3).embedder == "embedder:v1"  # kept on disk


def test_an_emptied_gallery_takes_any_embedder(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "g.sqlite3", dim=3)
    index.add(np.eye(3, dtype=np.float32)[:1], [{}], ids=["a"], embedder="embedder:v1")
    index.remove("a")
    assert index.embedder is None
    index.add(np.eye(3, dtype=np.float32)[:2], [{}, {}], embedder="embedder:v2")
    index.clear()
    assert len(index) == 0 and index.embedder is None and index.search(np.eye(3)[:1], 1) == [[]]
    index.add(np.eye(3, dtype=np.float32)[:1], [{}], embedder="embedder:v3")
    assert index.embedder == "embedder:v3"


def test_a_gallery_without_a_dimension_takes_the_first_vectors_and_keeps_it_when_reopened(tmp_path: Path) -> None:
    path = tmp_path / "auto.sqlite3"
    index = GalleryIndex(path)
    assert len(index) == 0 and index.search(np.ones((1, 5), np.float32), 3) == [[]]
    index.add(np.eye(5, dtype=np.float32)[:2], [{}, {}], embedder="embedder:v2")
    assert index.dim == 5
    with pytest.raises(ValueError, match="1280-d vectors for a gallery of 5-d"):
        index.add(np.ones((1, 1280), np.float32), [{}], embedder="embedder:v2")
    index.close()
    reopened = GalleryIndex(path)
    assert reopened.dim == 5 and len(reopened) == 2
    assert reopened.search(np.eye(5, dtype=np.float32)[:1], 1)[0][0].score == pytest.approx(1.0)


def test_an_emptied_gallery_takes_the_next_embedders_dimension(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "switch.sqlite3")
    (first,) = index.add(np.ones((1, 1280), np.float32) / 1280**0.5, [{}], embedder="embedder:v1")
    assert index.remove(first) and len(index) == 0
    index.add(np.eye(200, dtype=np.float32)[:3], [{}, {}, {}], embedder="embedder:v2")
    assert index.dim == 200 and index.embedder == "embedder:v2"
    index.clear()
    index.add(np.eye(7, dtype=np.float32)[:1], [{}], embedder="embedder:v3")
    assert index.dim == 7


def test_a_configured_dimension_is_kept_when_the_gallery_is_emptied(tmp_path: Path) -> None:
    index = GalleryIndex(tmp_path / "fixed.sqlite3", dim=3)
    index.add(np.eye(3, dtype=np.float32)[:1], [{}])
    index.clear()
    with pytest.raises(ValueError, match="4-d vectors for a gallery of 3-d"):
        index.add(np.ones((1, 4), np.float32), [{}])
