"""The real COCO128 mirror unpacks with the documented counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import coco
from training.settings import TrainingSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_real_mirror_unpacks_with_the_documented_counts(tmp_path: Path) -> None:
    mirror = TrainingSettings().datasets_mirror_dir
    if not (mirror / "coco128" / "coco128.tar.gz").is_file():
        pytest.skip(f"COCO mirror not found at {mirror}")
    root = coco.locate_coco128(tmp_path, mirror)
    assert len(coco.read_names(root / "data.yaml")) == 80
    train = coco.yolo_split(root, "train2017")
    assert len(train) == 128 and sum(not s.boxes for s in train) == 2  # two background images
    assert sum(len(s.boxes) for s in train) == 929
    gt, paths = coco.yolo_ground_truth(root, "val2017")
    assert len(paths) == 128 and len(gt["annotations"]) == 898
    assert len(coco.load_coco_json(root, "train2017")["annotations"]) == 939
