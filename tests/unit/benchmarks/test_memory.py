"""The memory benchmark's sampler, summaries and report on synthetic samples (and one real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
        flat = {"rss": 100.0, "pss": 80.0, "uss": 60.0}
        grows = {"rss": 200.0 + t / 6, "pss": 150.0 + t / 6, "uss": 100.0 + t / 6}
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
        assert all(v["rss"] > 0 and v["uss"] <= v["rss"] for v in memory.values())
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
