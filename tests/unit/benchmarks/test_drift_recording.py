"""The drift-features benchmark runs, restores the features it switches off, and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import drift_recording
from services.http import recording


def test_a_tiny_run_writes_both_reports(tmp_path: Path) -> None:
    original = recording.drift_features
    assert drift_recording.main(["--rounds", "1", "--calls", "2", "--out", str(tmp_path)]) == 0
    assert recording.drift_features is original
    result = json.loads((tmp_path / "drift_recording.json").read_text())
    assert set(result["images"]) == {"chelsea", "astronaut"}
    chelsea = result["images"]["chelsea"]
    assert chelsea["size"] == "451x300" and chelsea["features"] > 0
    assert chelsea["added"] == chelsea["records_with"] - chelsea["records_without"]
    text = (tmp_path / "drift_recording.md").read_text()
    assert text.startswith("# Drift features") and "| chelsea | 451x300 |" in text
