"""benchmarks/ab_simulation.py at a small size: the scenarios, their report files, and a few properties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import ab_simulation as sim
from benchmarks import ab_simulation_report as report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = sim.Params(experiments=300, looks=8, per_look=250, continuous_n=300, taus=(0.05,), seed=1)


def test_fixed_horizon_n_is_the_textbook_formula() -> None:
    # (1.96 sqrt(2 * 0.55 * 0.45) + 0.8416 sqrt(0.25 + 0.24))^2 / 0.1^2 = 387.3
    assert sim.fixed_horizon_n(0.5, 0.6, 0.05, 0.8) == 388
    assert sim.fixed_horizon_n(0.75, 0.78, 0.05, 0.8) == 3135


def test_simulated_looks_are_cumulative_counts() -> None:
    xc, nc, xt, _ = sim.simulate_looks(np.random.default_rng(0), SMALL, 0.9)
    assert xc.shape == nc.shape == (300, 8)
    assert np.all(np.diff(xc, axis=1) >= 0)
    assert np.all(xc <= nc)
    assert nc[0].tolist() == [250 * k for k in range(1, 9)]
    assert xt[:, -1].mean() / 2000 == pytest.approx(0.9, abs=0.01)


def test_first_crossing() -> None:
    rejected = np.array([[False, True, True], [False, False, False]])
    assert sim.first_crossing(rejected).tolist() == [1, -1]


def test_the_small_simulation_keeps_its_promises() -> None:
    results = sim.simulate(SMALL)
    null = results["null"]
    assert null["msprt"]["rate"] <= null["naive_peeking"]["rate"]
    assert null["msprt"]["rate"] <= 0.05
    assert np.all(np.diff(null["by_look"]["msprt"]) >= 0)
    assert np.all(np.diff(null["by_look"]["naive_peeking"]) >= 0)
    big = results["effects"][1]
    assert big["p_treatment"] == 0.80
    assert big["msprt_power"]["rate"] > 0.5
    assert big["mean_stop_n"] <= SMALL.max_n
    assert big["wrong_direction"] == 0
    assert len(results["tau_sensitivity"]) == 1
    assert results["continuous_null"]["looks_per_experiment"] == 300
    assert results["parameters"]["max_n"] == 2000


def test_main_writes_the_reports(tmp_path: Path) -> None:
    argv = ["--experiments", "100", "--looks", "4", "--per-look", "50", "--continuous-n", "100", "--out", str(tmp_path)]
    assert sim.main(argv) == 0
    body = json.loads((tmp_path / "ab_simulation.json").read_text())
    assert body["parameters"]["experiments"] == 100
    text = (tmp_path / "ab_simulation.md").read_text()
    assert "naive: fixed-horizon z-test at every one of the 4 looks" in text
    assert (tmp_path / "ab_simulation.png").read_bytes().startswith(PNG_SIGNATURE)


def test_markdown_marks_an_effect_that_never_stopped(tmp_path: Path) -> None:
    results = sim.simulate(sim.Params(experiments=20, looks=2, per_look=20, continuous_n=30, taus=(), effects=(0.76,)))
    results["effects"][0]["median_stop_n_of_stopped"] = None
    paths = report.write(results, tmp_path, plot_figure=False)
    assert [p.name for p in paths] == ["ab_simulation.json", "ab_simulation.md"]
    assert "| - |" in paths[1].read_text()
