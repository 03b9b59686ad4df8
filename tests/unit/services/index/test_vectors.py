"""AdaptiveIndex: exact below the threshold, HNSW from it on, tombstones, and recall with the shipped parameters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from services.config import ServingSettings
from services.index.gallery import GalleryIndex
from services.index.store import index_params, open_gallery
from services.index.vectors import AdaptiveIndex, IndexParams

SHIPPED = index_params(ServingSettings(_env_file=None))  # type: ignore[call-arg]


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def clustered(rows: int, dim: int = 64, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres: near neighbours that matter, as in an image gallery."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return unit(centres[rng.integers(clusters, size=rows)] + 0.35 * rng.normal(size=(rows, dim)))


def labels(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64)


def test_the_shipped_parameters_are_the_settings_defaults() -> None:
    assert IndexParams() == SHIPPED


def test_exact_below_the_threshold_hnsw_from_it_on() -> None:
    index = AdaptiveIndex(16, IndexParams(hnsw_threshold=100))
    index.add(clustered(99, dim=16), labels(99))
    assert (index.kind, len(index)) == ("exact", 99)
    index.add(clustered(1, dim=16, seed=1), labels(1, start=99))
    assert (index.kind, len(index)) == ("hnsw", 100)


def test_hnsw_finds_every_stored_vector_first() -> None:
    vectors = clustered(300, dim=16)
    index = AdaptiveIndex(16, IndexParams(hnsw_threshold=10))
    index.add(vectors, labels(300, start=1000))
    scores, found = index.search(vectors[:20], 1)
    assert found[:, 0].tolist() == list(range(1000, 1020))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_a_removed_vector_is_a_tombstone_never_returned() -> None:
    vectors = clustered(200, dim=16)
    index = AdaptiveIndex(16, IndexParams(hnsw_threshold=10, tombstone_fraction=0.5))
    index.add(vectors, labels(200))
    index.remove(np.asarray([5, 6, 7, 999]))  # 999 was never there
    assert (index.tombstones, len(index)) == (3, 197)
    _, found = index.search(vectors[5:8], 10)
    assert not {5, 6, 7} & set(found.ravel().tolist())
    assert (found >= 0).all() and found.shape == (3, 10)


def test_over_fetch_reaches_past_many_tombstones_near_the_query() -> None:
    vectors = unit(
        np.tile(np.eye(8, dtype=np.float32)[0], (100, 1)) + 0.01 * np.random.default_rng(0).normal(size=(100, 8))
    )
    index = AdaptiveIndex(8, IndexParams(hnsw_threshold=10, tombstone_fraction=0.9))
    index.add(vectors, labels(100))
    index.remove(labels(60))  # the 60 nearest-looking ones are gone: 40 left
    assert index.kind == "hnsw" and index.tombstones == 60
    _, found = index.search(vectors[:1], 30)
    assert len(set(found[0].tolist())) == 30 and min(found[0]) >= 60


def test_tombstones_past_the_fraction_rebuild_the_graph() -> None:
    index = AdaptiveIndex(16, IndexParams(hnsw_threshold=50, tombstone_fraction=0.1))
    index.add(clustered(100, dim=16), labels(100))
    index.remove(labels(10))
    assert (index.kind, index.tombstones, len(index)) == ("hnsw", 10, 90)
    index.remove(labels(1, start=10))  # 11 > 10 % of 100: rebuilt, still past the threshold
    assert (index.kind, index.tombstones, len(index)) == ("hnsw", 0, 89)
    index.remove(labels(40, start=11))  # 40 tombstones of 89: rebuilt below the threshold
    assert (index.kind, index.tombstones, len(index)) == ("exact", 0, 49)
    _, found = index.search(clustered(1, dim=16, seed=3), 49)
    assert set(found[0].tolist()) == set(range(51, 100))


def test_reset_and_an_empty_search() -> None:
    index = AdaptiveIndex(4, IndexParams(hnsw_threshold=2))
    index.add(unit(np.eye(4)), labels(4))
    index.reset()
    scores, found = index.search(unit(np.eye(4))[:2], 5)
    assert (index.kind, len(index), scores.shape, found.shape) == ("exact", 0, (2, 0), (2, 0))
    index.add(np.zeros((0, 4), np.float32), labels(0))
    assert len(index) == 0


def class_probabilities(rows: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Vectors like embedder v2's: softmaxed logits of ``dim`` classes, each row near one class's centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(dim, dim))
    centres[np.arange(dim), np.arange(dim)] += 6.0
    logits = centres[rng.integers(dim, size=rows)] + rng.normal(size=(rows, dim))
    return unit(np.exp(logits - logits.max(axis=1, keepdims=True)))


def test_recall_at_10_against_exact_search_with_the_shipped_parameters() -> None:
    gallery, queries = class_probabilities(6000), class_probabilities(200, seed=1)
    exact = AdaptiveIndex(64, replace(SHIPPED, hnsw_threshold=10**9))
    hnsw = AdaptiveIndex(64, replace(SHIPPED, hnsw_threshold=1000))
    for index in (exact, hnsw):
        index.add(gallery, labels(6000))
    assert (exact.kind, hnsw.kind) == ("exact", "hnsw")
    _, truth = exact.search(queries, 10)
    _, found = hnsw.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth.tolist(), found.tolist(), strict=True)])
    assert recall >= 0.98


def test_the_sqlite_gallery_switches_to_hnsw_and_back_after_removals(tmp_path: Path) -> None:
    gallery = GalleryIndex(tmp_path / "g.sqlite3", params=IndexParams(hnsw_threshold=30, tombstone_fraction=0.25))
    vectors = clustered(40, dim=8)
    gallery.add(vectors, [{"i": i} for i in range(40)], ids=[f"i{i}" for i in range(40)])
    assert gallery.index_kind == "hnsw"
    for i in range(12):
        gallery.remove(f"i{i}")
    assert (gallery.index_kind, len(gallery)) == ("exact", 28)
    assert gallery.search(vectors[20:21], 1)[0][0].id == "i20"
    gallery.close()
    reopened = GalleryIndex(tmp_path / "g.sqlite3", params=IndexParams(hnsw_threshold=20))
    assert (reopened.index_kind, len(reopened)) == ("hnsw", 28)
    assert reopened.search(vectors[30:31], 1)[0][0].id == "i30"
    reopened.close()


def test_open_gallery_is_sqlite_in_local_mode(tmp_path: Path) -> None:
    settings = ServingSettings(_env_file=None, data_dir=tmp_path, gallery_hnsw_threshold=7)  # type: ignore[call-arg]
    gallery = open_gallery(settings)
    assert isinstance(gallery, GalleryIndex)
    assert gallery.params.hnsw_threshold == 7 and gallery.path == tmp_path / "gallery.sqlite3"
    gallery.close()


def test_the_postgres_gallery_needs_a_postgres_url() -> None:
    with pytest.raises(ValueError, match="needs a PostgreSQL CV_DATABASE_URL"):
        ServingSettings(_env_file=None, gallery_backend="postgres")  # type: ignore[call-arg]
    settings = ServingSettings(_env_file=None, gallery_backend="postgres", database_url="postgresql://u@h/db")  # type: ignore[call-arg]
    assert settings.gallery_store == "postgres"


@pytest.mark.parametrize("threshold", [10_000, 10], ids=["exact", "hnsw"])
def test_query_expansion_adds_the_nearest_vectors_weighted_by_their_cosine(threshold: int) -> None:
    vectors = clustered(300, dim=16)
    index = AdaptiveIndex(16, IndexParams(hnsw_threshold=threshold))
    index.add(vectors, labels(300, start=500))
    queries = clustered(4, dim=16, seed=7)
    plain_scores, plain_labels = index.search(queries, 3)
    expected = queries + np.einsum("qk,qkd->qd", np.clip(plain_scores, 0, None), vectors[plain_labels - 500])
    expected = unit(expected)
    assert np.allclose(index.expanded(queries, 3), expected, atol=1e-5)
    scores, found = index.search(queries, 5, expand=3)
    exact_scores = expected @ vectors.T
    assert found[:, 0].tolist() == (exact_scores.argmax(axis=1) + 500).tolist()
    assert np.allclose(scores[:, 0], exact_scores.max(axis=1), atol=1e-4), "scores are cosines with the expanded query"


def test_query_expansion_never_uses_a_removed_vector() -> None:
    base = unit(np.asarray([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]))
    index = AdaptiveIndex(2)
    index.add(base, labels(3))
    query = unit(np.asarray([[0.6, 0.8]]))
    index.remove(np.asarray([2]))  # the query's nearest; the expansion falls to [0, 1]
    assert np.allclose(index.expanded(query, 1), unit(query + (query @ base[1]) * base[1]), atol=1e-6)


def test_query_expansion_past_the_gallery_size_uses_what_there_is() -> None:
    index = AdaptiveIndex(2)
    index.add(unit(np.asarray([[1.0, 0.0]])), labels(1))
    query = unit(np.asarray([[0.0, 1.0]]))  # orthogonal: weight 0, the query is unchanged
    assert np.allclose(index.expanded(query, 5), query)
    assert AdaptiveIndex(2).search(query, 3, expand=5)[1].shape == (1, 0)
