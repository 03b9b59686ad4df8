"""The query-expansion sweep's arithmetic (benchmarks/search_expansion.py), on small hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import search_expansion as bench
from training.evaluate import neighbour_hits


def _clusters(
    seed: int = 3, per_class: int = 12, classes: int = 4, noise: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 8))
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + noise * rng.normal(size=(len(labels), 8))).astype(np.float32), labels


def test_split_gallery_takes_the_same_number_of_each_label_with_a_fixed_seed() -> None:
    labels = np.repeat(np.arange(3), 6)
    mask = bench.split_gallery(labels, 2)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 2, 2]
    assert np.array_equal(mask, bench.split_gallery(labels, 2))
    with pytest.raises(ValueError, match="fewer than 7"):
        bench.split_gallery(labels, 7)


def test_a_gallery_of_its_own_is_searched_without_leaving_anything_out() -> None:
    vectors, labels = _clusters()
    mask = bench.split_gallery(labels, 4)
    queries, gallery = (vectors[~mask], labels[~mask]), (vectors[mask], labels[mask])
    shares = neighbour_hits(*queries, k=4, gallery=gallery)
    unit = [rows / np.linalg.norm(rows, axis=1, keepdims=True) for rows in (queries[0], gallery[0])]
    sims = unit[0] @ unit[1].T  # cosine: the rows are not unit length
    by_hand = (gallery[1][np.argsort(-sims, axis=1)[:, :4]] == queries[1][:, None]).mean(axis=1)
    assert np.allclose(shares, by_hand)
    with pytest.raises(ValueError, match="gallery of at least k=10 rows, got 9"):
        neighbour_hits(*queries, k=10, gallery=(gallery[0][:9], gallery[1][:9]))
    assert len(neighbour_hits(*queries, k=10, gallery=(gallery[0][:10], gallery[1][:10]))) == len(queries[0])


def test_sharper_weights_give_the_neighbours_less_pull() -> None:
    vectors, labels = _clusters(noise=1.2)
    plain = neighbour_hits(vectors, labels, 10).mean()
    cosine = neighbour_hits(vectors, labels, 10, expand=8).mean()
    sharpest = neighbour_hits(vectors, labels, 10, expand=8, alpha=400.0).mean()
    assert cosine != pytest.approx(plain)  # the neighbours move the queries
    assert sharpest == pytest.approx(plain)  # cos ** 400 of any other row is ~0: the query alone
    assert np.allclose(
        neighbour_hits(vectors, labels, 10, expand=8, alpha=1.0), neighbour_hits(vectors, labels, 10, expand=8)
    )


def test_sweep_and_render_cover_every_gallery_size_and_setting() -> None:
    vectors, labels = _clusters(per_class=49, classes=3)
    rows = bench.sweep(vectors, labels, [49, 5], [0, 4], [1.0, 6.0])
    assert [(r["per_class"], r["expand"], r["alpha"]) for r in rows] == [
        (49, 0, 1.0),
        (49, 4, 1.0),
        (49, 4, 6.0),
        (5, 0, 1.0),
        (5, 4, 1.0),
        (5, 4, 6.0),
    ]
    assert all(0.0 <= r["precision_at_10"] <= 1.0 for r in rows)
    report = {
        "version": "v8",
        "onnx": "artifacts/x/model.int8.onnx",
        "per_class": [49, 5],
        "rows": [{"view": v, **r} for v in ("plain", "flip") for r in rows],
        "machine": {"nproc": 2},
        "seconds": 1.0,
    }
    text = bench.render(report)
    assert "| plain | 49 (each vs the other 9,999) |" in text
    assert "K=4, cos^6" in text and "| flip | 5 |" in text
