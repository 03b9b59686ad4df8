"""benchmarks/regression.py for real: the bare-model path end to end against HEAD, a side process on a real store,
and the fixed accuracy samples scored through the real server.

The served rounds are not run here (two `bentoml serve` per side would cost CI minutes); the committed
benchmarks/reports/regression.md is a full run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import regression, regression_side
from benchmarks.regression_served import accuracy, classifier_sample, coco_sample
from services.config import get_settings
from tests.integration.server import Server

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
# fp32 may be anything (1000x), int8 can only fail (faster than 1/1000 of the baseline): a verdict without timing.
LIMITS = """
defaults: {latency: {max_ratio: 1000}}
metrics: {"bare/classifier/int8/*": {max_ratio: 0.001}}
"""


def _worktrees() -> set[str]:
    """The paths of the repository's worktrees (other checkouts may move their commits meanwhile)."""
    cmd = ["git", "-C", str(REPO), "worktree", "list", "--porcelain"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {line.removeprefix("worktree ") for line in out.splitlines() if line.startswith("worktree ")}


@pytest.fixture
def mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run sets the mirror variables for its sides when unset: set here, so the test leaves them as found."""
    settings = get_settings()
    if not (settings.model_mirror_dir / "yolox_nano.onnx").is_file():
        pytest.skip(f"model mirror not found at {settings.model_mirror_dir} (set CV_MODEL_MIRROR_DIR)")
    monkeypatch.setenv("CV_MODEL_MIRROR_DIR", str(settings.model_mirror_dir))
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(settings.datasets_mirror_dir))
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")


def test_quick_bare_run_against_head_names_the_failing_metric_and_cleans_up(mirrors: None, tmp_path: Path) -> None:
    config, out = tmp_path / "limits.yaml", tmp_path / "report.md"
    config.write_text(LIMITS)
    before = _worktrees()
    args = ["--baseline", "HEAD", "--quick", "--parts", "bare", "--models", "classifier", "--isolated-builds"]
    code = regression.main([*args, "--config", str(config), "--out", str(out)])
    assert code == 1
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["metrics"]) == {"baseline", "tree"}
    for side in report["metrics"].values():
        assert set(side) == {"bare/classifier/fp32/p50_ms", "bare/classifier/int8/p50_ms"}
        assert all(math.isfinite(v) and v > 0 for v in side.values())
    assert {c["metric"]: c["passed"] for c in report["checks"]} == {
        "bare/classifier/fp32/p50_ms": True,
        "bare/classifier/int8/p50_ms": False,
    }
    assert len(report["raw"]["tree"]["bare"]["classifier/int8"]["samples"]) == 2 * 4  # --quick: 2 blocks of 4
    assert "- bare/classifier/int8/p50_ms:" in out.read_text()
    assert _worktrees() == before


def test_a_side_process_times_every_precision_of_its_store(
    model_store: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert regression_side.main(["--root", str(REPO), "--models", "detector", "--calls", "2", "--warmup", "0"]) == 0
    bare = json.loads(capsys.readouterr().out)
    assert set(bare) == {"detector/fp32", "detector/int8"}
    assert all(r["n"] == 2 and r["p50"] > 0 for r in bare.values())


def test_the_accuracy_samples_are_fixed_and_scored_through_the_served_routes(server: Server, tmp_path: Path) -> None:
    mirror = get_settings().datasets_mirror_dir
    if not (mirror / "tiny-imagenet-200").is_dir() or not (mirror / "coco128").is_dir():
        pytest.skip(f"data-set mirror not found at {mirror} (set CV_DATASETS_MIRROR_DIR)")
    sample = classifier_sample(mirror, 24)
    assert sample == classifier_sample(mirror, 24) and len({data for data, _ in sample}) == 24
    assert sample != classifier_sample(mirror, 24, seed=1)
    truth, paths = coco_sample(mirror, tmp_path, 4)
    assert len(paths) == 4 and {image["id"] for image in truth["images"]} == {1, 2, 3, 4}
    assert {a["image_id"] for a in truth["annotations"]} <= {1, 2, 3, 4}
    result = accuracy(server, sample, (truth, paths))
    assert result["failed_requests"] == 0
    assert 0.0 <= result["classifier_top1"] <= 100.0 and 0.0 < result["detector_map50_95"] <= 100.0
