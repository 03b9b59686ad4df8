"""benchmarks/memory_detector.py's summary and report (the served run: `python benchmarks/memory_detector.py`)."""

from __future__ import annotations

import pytest

from benchmarks import memory_detector


def test_summary_reads_the_plateau_and_when_it_was_reached() -> None:
    samples = [
        [0, 300.0],
        [10, 380.0],
        [60, 430.0],
        [70, 432.0],
        [110, 434.0],
        [120, 435.0],
        *[[t, 436.0] for t in range(130, 200, 10)],
    ]
    row = memory_detector.summary({"variant": "default", "minutes": 3.2, "samples": samples})
    variant, start, first, last, peak, settled, growth, *load = row
    assert load == ["n/a"] * 3  # a run from before the load was recorded
    assert (variant, start, peak, settled) == ("default", 300.0, 436.0, 70)  # 432 is within 1 % of 436
    assert first == pytest.approx((430 + 432 + 434) / 3) and last == 436.0
    assert growth == pytest.approx(100 * (436 / first - 1))


def test_render_has_a_row_per_variant() -> None:
    result = {"variant": "MALLOC_ARENA_MAX=2", "minutes": 1.0, "samples": [[t, 400.0] for t in range(0, 130, 10)]}
    result["load"] = {"detect_per_s": 20.5, "detect_p50_ms": 250.0, "worker_cpu_ms_per_image": 31.5}
    text = memory_detector.render([result])
    assert "| MALLOC_ARENA_MAX=2 | 400.0 | 400.0 | 400.0 | 400.0 | 0 | 0.0 | 20.5 | 250.0 | 31.5 |" in text
