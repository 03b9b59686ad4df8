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
        "decision": {
            "key lookup, cache miss (PostgreSQL)": _s(1.0),
            "key lookup, cache hit": _s(0.004),
            "limiter (Redis Lua)": _s(0.2),
        },
    }
    report = gateway.render(results)
    assert "adds **5.5 ms** at p50 to `GET /api/v1/models` and **6.0 ms**" in report
    assert "keeps **0.90x** of the direct throughput" in report
    assert "answers in 3.0 ms" in report
    assert "0.004 ms from the cache" in report
    assert "`python benchmarks/gateway.py --quick`" in report


def test_quick_runs_fewer_calls() -> None:
    assert gateway.parse_args(["--quick"]).calls < gateway.parse_args([]).calls


def test_the_auth_report_compares_variants_with_no_cache() -> None:
    from benchmarks import gateway_auth

    results = {
        "quick": False,
        "date": "2026-12-05",
        "load": 1.5,
        "http": {"no cache (every request reads PostgreSQL)": _s(3.0), "key cache": _s(1.5)},
        "parts": {"key lookup, cache hit (incl. HMAC check)": _s(0.004)},
        "revocation": _s(2.0, max=4.0),
    }
    report = gateway_auth.render(results)
    assert "| key cache | 10 | 1.5 | 3.0 | -1.50 |" in report
    assert "p50 **2.0 ms**" in report and "max 4.0 ms" in report
    assert set(gateway_auth.variants("/x")) > set(gateway_auth.variants(None))


def test_interleaved_alternates_the_calls() -> None:
    order: list[str] = []
    timings = gateway.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3, warmup=1)
    assert order == ["a", "b"] * 4
    assert timings["a"]["n"] == timings["b"]["n"] == 3
