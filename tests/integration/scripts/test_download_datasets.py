"""The challenge's command as typed, on the real mirror: scripts/setup/download_datasets.py --dataset tiny_imagenet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.data.tiny_imagenet import TinyImageNet
from training.settings import TrainingSettings

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.integration
@pytest.mark.slow
def test_the_setup_script_unpacks_tiny_imagenet_from_the_real_mirror(tmp_path: Path) -> None:
    mirror = TrainingSettings().datasets_mirror_dir
    if not (mirror / "tiny-imagenet-200" / "SHA256SUMS").is_file():
        pytest.skip(f"no Tiny-ImageNet mirror at {mirror} (set CV_DATASETS_MIRROR_DIR)")
    env = {**os.environ, "CV_DATA_DIR": str(tmp_path), "CV_DATASETS_MIRROR_DIR": str(mirror)}
    root = tmp_path / "datasets" / "tiny-imagenet-200"
    try:
        done = subprocess.run(
            [sys.executable, "scripts/setup/download_datasets.py", "--dataset", "tiny_imagenet"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"tiny_imagenet: from the mirror folder {mirror / 'tiny-imagenet-200'}" in done.stderr
        assert f"tiny_imagenet unpacked to {root}" in done.stderr
        data = TinyImageNet(root)
        assert data.num_classes == 200
        assert len(data.train()) == 50_000
        assert len(data.val()) == 10_000
        assert all(sample.path.is_file() for sample in data.val()[::1000])
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 60,000 files; pytest keeps tmp dirs
