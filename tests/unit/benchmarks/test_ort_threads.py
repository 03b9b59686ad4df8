"""benchmarks/ort_threads.py on a tiny real ONNX file: every setting measured, the report written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ort_threads


def test_measures_every_setting_and_writes_the_report(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort_threads, "served_int8", lambda name: tiny_onnx)
    monkeypatch.setattr(ort_threads, "SHAPES", {"classifier": (1, 3, 8, 8)})
    monkeypatch.setattr(ort_threads, "BETWEEN_S", 0.0001)
    out = tmp_path / "ort_threads.md"
    assert ort_threads.main(["--runs", "6", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    rows = data["models"]["classifier"]["rows"]
    assert list(rows) == list(ort_threads.SETTINGS)
    for row in rows.values():
        assert row["lone p50 ms"] > 0 and row["two callers runs/s"] > 0 and row["two callers CPU ms per run"] >= 0
    text = out.read_text()
    assert "## classifier (tiny.onnx, batch 1)" in text
    assert "spinning during a run only (the solo session)" in text


def test_a_session_is_made_as_each_setting_says(tiny_onnx: Path) -> None:
    session = ort_threads.session(tiny_onnx, 2, True, True)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_the_file_measured_is_the_production_entrys_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from services.models import store

    def entry(stage: str, name: str) -> SimpleNamespace:
        return SimpleNamespace(spec=SimpleNamespace(stage=SimpleNamespace(value=stage)), paths={"int8": f"/m/{name}"})

    monkeypatch.setattr(store, "list_versions", lambda name: [entry("archived", "old"), entry("production", "new")])
    assert ort_threads.served_int8("classifier") == Path("/m/new")
