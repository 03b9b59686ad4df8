"""scripts/download_datasets.py unpacks the real Tiny-ImageNet mirror."""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

import pytest

from training.data.tiny_imagenet import TinyImageNet

REPO = Path(__file__).resolve().parents[4]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_script_unpacks_the_real_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.settings import TrainingSettings

    mirror = TrainingSettings().datasets_mirror_dir
    if not (mirror / "tiny-imagenet-200" / "SHA256SUMS").is_file():
        pytest.skip(f"no Tiny-ImageNet mirror at {mirror} (set CV_DATASETS_MIRROR_DIR)")
    argv = [
        "download_datasets.py",
        "--dataset",
        "tiny_imagenet",
        "--from-mirror",
        str(mirror),
        "--data-dir",
        str(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / "scripts" / "download_datasets.py"), run_name="__main__")
        assert exit_info.value.code == 0
        data = TinyImageNet(tmp_path / "tiny-imagenet-200")
        assert data.num_classes == 200
        assert len(data.train()) == 50_000
        assert len(data.val()) == 10_000
        assert all(sample.path.is_file() for sample in data.val()[::1000])
    finally:
        shutil.rmtree(tmp_path / "tiny-imagenet-200", ignore_errors=True)  # 60,000 files; pytest keeps tmp dirs
