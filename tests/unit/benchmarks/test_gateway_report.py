"""benchmarks/gateway.py's report: the overheads and the ratio come from the measured numbers."""

from __future__ import annotations

from typing import Any

from benchmarks import gateway


def _s(p50: float, n: int = 10, **extra: Any) -> dict[str, Any]:
    return {"n": n, "p50": p50, "p99": p50 * 2, "mean": p50, **extra}


def test_the_report_derives_overheads_and_ratio_from_the_results() -> None:
    results = {
        "quick": True,
        "machine": {"date": "2026-11-27", "nproc": 2},
        "sequential": {
            "models direct": _s(8.0),
            "classify direct": _s(20.0),
            "models edge": _s(13.5),
            "classify edge": _s(26.0),
            "auth alone": _s(3.0),
        },
        "concurrent": {
            "classify direct c=8": _s(100.0, throughput=50.0, statuses={200: 10}),
            "classify edge c=8": _s(110.0, throughput=45.0, statuses={200: 10}),
            "auth alone c=16": _s(30.0, throughput=300.0, statuses={200: 10}),
        },
        "decision": {"key lookup (PostgreSQL)": _s(1.0), "limiter (Redis Lua)": _s(0.2)},
    }
    report = gateway.render(results)
    assert "adds **5.5 ms** at p50 to `GET /api/v1/models` and **6.0 ms**" in report
    assert "keeps **0.90x** of the direct throughput" in report
    assert "`python benchmarks/gateway.py --quick`" in report


def test_quick_runs_fewer_calls() -> None:
    assert gateway.parse_args(["--quick"]).calls < gateway.parse_args([]).calls
