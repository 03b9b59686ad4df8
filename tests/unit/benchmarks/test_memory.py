"""The memory benchmark's sampler, summaries and report on synthetic samples (and one real process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from benchmarks.memory import prometheus_head
from benchmarks.memory_load import Tally
from benchmarks.memory_report import goal_rows, plot_soak, render, service_peaks, soak_section
from benchmarks.memory_sampler import Sample, Sampler, group_of, grouped, growth, role_of, summarise, tree_roles

PY = "/venv/bin/python"


@pytest.mark.parametrize(
    ("cmdline", "parent", "role"),
    [
        (
            [PY, "/venv/bin/bentoml", "serve", "services.api:Api", "--port", "3000"],
            None,
            "bentoml supervisor (services.api:Api)",
        ),
        (
            [
                PY,
                "-m",
                "_bentoml_impl.worker.service",
                "services.api:Api",
                "--service-name",
                "Classifier",
                "--worker-id",
                "1",
            ],
            None,
            "Classifier worker 1",
        ),
        ([PY, "-m", "celery", "--app", "x", "worker", "--beat"], None, "celery worker (main) + beat"),
        (
            [PY, "-m", "celery", "--app", "x", "worker"],
            [PY, "-m", "celery", "--app", "x", "worker"],
            "celery pool child",
        ),
        ([PY, "-m", "celery", "--app", "x", "beat"], None, "celery beat"),
        ([PY, "-m", "gateway", "serve"], None, "auth (gateway serve)"),
        (["/usr/bin/traefik", "--configFile=x"], None, "traefik"),
        (
            [PY, "-c", "from multiprocessing.resource_tracker import main;main(5)"],
            None,
            "multiprocessing resource tracker",
        ),
    ],
)
def test_role_of_names_the_processes_of_the_stack(cmdline: list[str], parent: list[str] | None, role: str) -> None:
    assert role_of(cmdline, parent) == role


def test_group_of_is_the_topology_process_or_the_bentoml_service() -> None:
    assert group_of("classifier: Classifier worker 1") == "classifier"
    assert group_of("Detector worker 2") == "Detector"
    assert group_of("celery pool child #2") == "celery pool child"


def _samples() -> list[Sample]:
    """Two processes over 10 minutes: one flat at 100 MB, one growing from 200 to 300 MB."""
    out = []
    for t in range(0, 601, 10):
        flat = {"rss": 100.0, "pss": 80.0, "uss": 60.0, "anon": 50.0}
        # Its growth is file pages it maps: anonymous RSS stays flat.
        grows = {"rss": 200.0 + t / 6, "pss": 150.0 + t / 6, "uss": 100.0 + t / 6, "anon": 90.0}
        out.append(Sample(float(t), {"classifier: Classifier worker 1": flat, "classifier: bentoml supervisor": grows}))
    return out


def test_summarise_grouped_and_growth() -> None:
    samples = _samples()
    phases = summarise(samples, [("idle", 0, 60), ("load", 300, 600)])
    worker = phases["load"]["classifier: Classifier worker 1"]
    assert worker["rss_mean"] == worker["rss_max"] == 100.0
    assert phases["load"]["classifier: bentoml supervisor"]["rss_max"] == pytest.approx(300.0)
    total = grouped({k: {"pss_max": v["pss_max"]} for k, v in phases["load"].items()})
    assert total == {"classifier": {"pss_max": pytest.approx(80.0 + 250.0)}}
    change = growth(samples, 180, 600, window_s=60)
    assert change["classifier: Classifier worker 1"]["rss_growth_pct"] == 0.0
    assert change["classifier: bentoml supervisor"]["rss_growth_pct"] > 5.0
    assert change["classifier: bentoml supervisor"]["anon_growth_pct"] == 0.0


def test_samples_of_an_earlier_run_without_anonymous_rss_still_summarise() -> None:
    samples = [
        Sample(s.t, {r: {k: v for k, v in m.items() if k != "anon"} for r, m in s.memory.items()}) for s in _samples()
    ]
    phases = summarise(samples, [("load", 300, 600)])
    assert "anon_max" not in phases["load"]["classifier: Classifier worker 1"]
    change = growth(samples, 180, 600, window_s=60)["classifier: bentoml supervisor"]
    assert change["rss_growth_pct"] > 5.0 and "anon_growth_pct" not in change


def test_goal_rows_judge_model_services_only() -> None:
    phases = summarise(_samples(), [("idle", 0, 60), ("load", 300, 600)])
    peaks = service_peaks(phases)
    assert peaks["classifier"]["pss"] == pytest.approx(330.0)
    (row,) = goal_rows({**peaks, "api-1": peaks["classifier"]})
    assert row[0] == "classifier" and row[-1] == "**no**"


def test_the_sampler_reads_a_real_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = Sampler({"me": os.getpid()}, interval_s=0.05).start()
        with sampler.phase("p"):
            while len(sampler.samples) < 3:
                sampler._stop.wait(0.05)
        sampler.stop()
        roles = [role for role, _ in tree_roles(os.getpid(), prefix="me")]
        assert "me: -c import time; time.sleep(30)" in roles, roles
        memory = sampler.samples[-1].memory
        assert all(v["rss"] > 0 and v["uss"] <= v["rss"] and 0 < v["anon"] <= v["rss"] for v in memory.values())
        assert sampler.torch  # looked at every process once
        assert summarise(sampler.samples, sampler.phases)["p"]
    finally:
        child.kill()
        child.wait()


def _soak() -> dict[str, object]:
    tally = Tally()
    tally.record("/api/v1/classify", "200")
    tally.record("/api/v1/detect", "503", "overloaded")
    return {
        **tally.as_dict(),
        "error_count": tally.error_count,
        "rate": 10.0,
        "peak": 14.3,
        "t0": 0.0,
        "t1": 600.0,
        "warmup_s": 180.0,
        "batch": Tally().as_dict(),
        "growth": growth(_samples(), 180, 600),
    }


def test_soak_verdict_fails_on_errors_or_growth_and_the_plot_is_written(tmp_path: Path) -> None:
    text = soak_section(_soak())
    assert "**1 errors**" in text and "**fail**" in text and "classifier: bentoml supervisor" in text
    plot_soak(_samples(), _soak(), tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 1000


def test_the_soak_says_what_prometheus_held_and_says_nothing_without_it() -> None:
    metrics = ("prometheus_tsdb_head_series", "prometheus_tsdb_head_chunks", "go_memstats_heap_inuse_bytes")
    start, end = (
        dict(zip(metrics, (900.0, 1800.0, 40 * 2**20), strict=True)),
        dict(zip(metrics, (900.0, 3600.0, 48 * 2**20), strict=True)),
    )
    text = soak_section({**_soak(), "prometheus_head": {"start": start, "end": end}})
    assert "head series 900 -> 900, head chunks\n1,800 -> 3,600, Go heap in use 40 -> 48 MB" in text
    assert "head series" not in soak_section(_soak())
    assert "head series" not in soak_section({**_soak(), "prometheus_head": {"start": None, "end": None}})


def test_prometheus_head_reads_a_real_metrics_page() -> None:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (
                b"# HELP prometheus_tsdb_head_series Total number of series in the head block.\n"
                b"prometheus_tsdb_head_series 1234\nprometheus_tsdb_head_chunks 5678\n"
                b"go_memstats_heap_inuse_bytes 4.194304e+07\nprometheus_tsdb_head_chunks_created_total 9\n"
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        head = prometheus_head(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert head == {
        "prometheus_tsdb_head_series": 1234.0,
        "prometheus_tsdb_head_chunks": 5678.0,
        "go_memstats_heap_inuse_bytes": 41943040.0,
    }
    assert prometheus_head(None) is None


def test_render_the_whole_report() -> None:
    phases = summarise(_samples(), [("idle after start", 0, 60), ("load", 300, 600)])
    deployment = {"phases": phases, "torch": {"x": True}, "load": {"throughput": 12.0, "error_count": 0}}
    deployment["jobs"] = {"jobs": {"succeeded": 4}, "error_count": 0}
    results = {
        "machine": {"date": "today"},
        "gallery": {
            "phases": {"gallery build (5 images)": {"build_gallery": phases["load"]["classifier: bentoml supervisor"]}},
            "seconds": 3.0,
        },
        "serve": deployment,
        "production": {**deployment, "soak": _soak()},
    }
    text = render(results)
    assert "300 MB, peak PSS 250 MB" in text
    assert text.count("### Goal") == 2 and "torch's libraries mapped: x" in text


def _raw_run(tmp_path: Path) -> Path:
    """The --raw file of a topology-only run (no `make serve` section), as memory.py pickles it."""
    import pickle

    phases = summarise(_samples(), [("idle after start", 0, 60), ("load", 300, 600)])
    deployment = {"phases": phases, "torch": {}, "load": {"throughput": 12.0, "error_count": 0}}
    deployment["jobs"] = {"jobs": {"succeeded": 4}, "error_count": 0}
    results = {
        "machine": {"date": "today"},
        "gallery": {
            "phases": {"gallery build (5 images)": {"build_gallery": phases["load"]["classifier: bentoml supervisor"]}},
            "seconds": 3.0,
        },
        "production": {**deployment, "soak": _soak(), "soak_series": _samples()},
    }
    raw = tmp_path / "raw.pickle"
    raw.write_bytes(pickle.dumps(results))
    return raw


def test_memory_main_renders_a_raw_file_of_an_earlier_run(tmp_path: Path) -> None:
    from benchmarks import memory

    raw = _raw_run(tmp_path)
    out = tmp_path / "memory.md"
    assert memory.main(["--render", str(raw), "--out", str(out)]) == 0
    assert "## Soak through the edge" in out.read_text() and "make serve" not in out.read_text().split("\n## ")[2]
    assert (tmp_path / "memory.json").is_file() and (tmp_path / "memory_soak.png").is_file()


def test_memory_quick_plan_is_short() -> None:
    from benchmarks.memory import parse_args

    plan = parse_args(["--quick", "--soak-minutes", "20"])
    assert (plan.soak_minutes, plan.gallery, plan.idle_s) == (1.0, 100, 5.0)
    assert parse_args([]).soak_minutes == 20.0


def test_memory_ort_render_and_rss() -> None:
    from benchmarks.memory_ort import _rss_mb
    from benchmarks.memory_ort import render as render_ort

    rss, peak = _rss_mb()
    assert 0 < rss <= peak
    row = {"imports": 70.0, "loaded": 140.0, "after runs": 200.0, "peak": 210.0, "batch16 ms": 50.0}
    text = render_ort({"detector": {"CPU arena off": row}}, runs=2)
    assert "| detector | CPU arena off | 70.0 | 140.0 | 200.0 | 210.0 | 50.0 |" in text


def _api(fail_detect: bool = False) -> httpx.MockTransport:
    """A stand-in api: 200 for inference, 202 + a job that has succeeded by the first poll; 503 for detect if asked."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/batch":
            return httpx.Response(202, json={"location": "/api/v1/jobs/j1", "status": "queued"})
        if request.url.path.startswith("/api/v1/jobs/"):
            return httpx.Response(200, json={"status": "succeeded"})
        if fail_detect and request.url.path == "/api/v1/detect":
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json={})

    return httpx.MockTransport(handle)


def test_mixed_load_counts_every_route_and_errors() -> None:
    import asyncio

    from benchmarks.memory_load import mixed

    jpegs = {"chelsea": b"c", "astronaut": b"a"}
    result = asyncio.run(mixed("http://api", {}, jpegs, 0.3, 2, 200.0, _api(fail_detect=True)))
    routes = {key.split()[0] for key in result["statuses"]}
    assert routes == {"/api/v1/classify", "/api/v1/detect", "/api/v1/search"}
    assert result["error_count"] == result["statuses"]["/api/v1/detect 503"] > 0
    assert result["ok"] == sum(n for k, n in result["statuses"].items() if k.endswith(" 200"))


def test_jobs_and_soak_poll_jobs_to_the_end() -> None:
    import asyncio

    from benchmarks import memory_load

    jpegs = {"chelsea": b"c", "astronaut": b"a"}
    done = asyncio.run(memory_load.jobs("http://api", {}, jpegs, 3, 4, _api()))
    assert done["jobs"] == {"succeeded": 3} and done["error_count"] == 0
    soaked = asyncio.run(memory_load.soak("http://api", {}, jpegs, 2.5, 50.0, 2.0, _api()))
    assert soaked["error_count"] == 0 and soaked["batch"]["jobs"] == {"succeeded": 1}


def test_the_soak_names_the_metrics_that_gained_series() -> None:
    series = {"start": {"a_total": 4, "b_bucket": 30, "c": 2}, "end": {"a_total": 4, "b_bucket": 47, "c": 3, "d": 1}}
    text = soak_section({**_soak(), "prometheus_series": series})
    assert "(of 3 that gained any): `b_bucket` +17 (30 -> 47), `c` +1 (2 -> 3), `d` +1 (0 -> 1)." in text
    assert "No metric gained" in soak_section(
        {**_soak(), "prometheus_series": {"start": series["end"], "end": series["end"]}}
    )
    assert "gained the most" not in soak_section(_soak())


def test_a_topology_only_report_under_another_name_links_its_own_plot(tmp_path: Path) -> None:
    from benchmarks import memory

    raw = _raw_run(tmp_path)
    out = tmp_path / "memory_topology.md"
    assert memory.main(["--render", str(raw), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Memory: every process of the production topology (`--skip-serve`)")
    assert "](memory_topology_soak.png)" in text and (tmp_path / "memory_topology_soak.png").is_file()
