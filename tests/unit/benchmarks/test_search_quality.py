"""benchmarks/search_quality.py: halves, scoring and report (the served run: `python benchmarks/search_quality.py`)."""

from __future__ import annotations

from benchmarks import search_quality


def record(number: int, wnid: str) -> search_quality.Record:
    return b"", {"filename": f"val_{number}.JPEG", "wnid": wnid}


def test_halves_put_even_numbers_in_the_gallery_and_odd_ones_in_the_queries() -> None:
    gallery, queries = search_quality.halves(iter([record(n, "a") for n in (0, 1, 2, 13, 10)]))
    assert [search_quality.image_number(r) for r in gallery] == [0, 2, 10]
    assert [search_quality.image_number(r) for r in queries] == [1, 13]


def test_precision_at_10_counts_missing_hits_as_misses() -> None:
    hits = [{"metadata": {"wnid": w}} for w in ("a", "b", "a")]
    assert search_quality.precision_at_10(hits, "a") == 0.2
    assert search_quality.precision_at_10([{"metadata": {"wnid": "a"}}] * 12, "a") == 1.0


def _result(version: str, precision: float = 0.71234, images: int = 5000) -> dict[str, object]:
    return {
        "precision_at_10": precision,
        "queries": images,
        "query_expansion": [0],
        "latency_ms": {"p50": 8.5, "p99": 15.0},
        "model": {"name": "embedder", "version": version, "precision": "int8"},
        "gallery_size": images,
    }


def test_render_has_a_row_per_way() -> None:
    result = _result("v2")
    text = search_quality.render({"machine": {"nproc": 2}, "results": {"default": result, "expand=10": result}})
    assert "| default | 0.7123 | 0 | 5000 | 5000 | 8.5 | 15.0 |" in text and "| expand=10 |" in text
    assert "embedder\nv2 (int8)" in text or "embedder v2 (int8)" in text
    assert "artifacts/lite0_tiny_imagenet200/embedder.metrics.json" in text  # v2's release folder


def test_render_points_at_the_measured_versions_own_metrics() -> None:
    text = search_quality.render({"machine": {}, "results": {"default": _result("v8")}})
    assert "artifacts/lite0_tiny_imagenet200_v8/embedder.metrics.json" in text
    unreleased = search_quality.render({"machine": {}, "results": {"default": _result("v99")}})
    assert "the release's embedder.metrics.json" in unreleased
