"""COCO128 / YOLO loaders on a small tree in the same layout, and the mirror unpacking."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import coco

NAMES = ["person", "bicycle", "car"]


def _image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)


def build_tree(root: Path) -> Path:
    """``root/coco128``: two labelled images, one background image, a label-free val split and a JSON."""
    tree = root / "coco128"
    tree.mkdir(parents=True)
    (tree / "data.yaml").write_text("train: images/train2017\nval: images/train2017\nnc: 3\nnames: " + str(NAMES))
    _image(tree / "images/train2017/000000000002.jpg", 200, 100)
    _image(tree / "images/train2017/000000000001.jpg", 40, 80)
    _image(tree / "images/train2017/000000000003.jpg", 64, 64)  # background: no label file
    labels = tree / "labels/train2017"
    labels.mkdir(parents=True)
    (labels / "000000000002.txt").write_text("2 0.5 0.5 0.5 0.2\n0 0.25 0.75 0.1 0.1\n")
    (labels / "000000000001.txt").write_text("1 0.5 0.5 1.0 1.0\n\n")
    _image(tree / "images/val2017/000000000139.jpg", 32, 32)
    (tree / "labels/val2017").mkdir(parents=True)
    (tree / "labels/val2017/000000000139.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    annotations = {"images": [{"id": 2, "file_name": "000000000002.jpg"}], "annotations": [], "categories": []}
    (tree / "annotations").mkdir()
    (tree / "annotations/instances_train2017.json").write_text(json.dumps(annotations))
    return tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "datasets")


def test_read_names_from_a_list(tree: Path) -> None:
    assert coco.read_names(tree / "data.yaml") == NAMES


def test_read_names_from_an_id_map(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("names:\n  1: bicycle\n  0: person\n")
    assert coco.read_names(path) == ["person", "bicycle"]


def test_read_names_refuses_gaps_in_the_ids(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("names:\n  0: person\n  2: car\n")
    with pytest.raises(coco.CocoLayoutError, match=r"0\.\.1"):
        coco.read_names(path)


def test_read_names_without_names_is_a_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("train: images/train2017\n")
    with pytest.raises(coco.CocoLayoutError, match="names"):
        coco.read_names(path)


def test_label_file_lines_become_boxes_and_blank_lines_are_skipped(tree: Path) -> None:
    boxes = coco.read_yolo_labels(tree / "labels/train2017/000000000002.txt")
    assert boxes == (coco.YoloBox(2, 0.5, 0.5, 0.5, 0.2), coco.YoloBox(0, 0.25, 0.75, 0.1, 0.1))
    assert coco.read_yolo_labels(tree / "labels/train2017/000000000001.txt") == (coco.YoloBox(1, 0.5, 0.5, 1.0, 1.0),)


def test_missing_label_file_means_background(tree: Path) -> None:
    assert coco.read_yolo_labels(tree / "labels/train2017/000000000003.txt") == ()


def test_malformed_label_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n3 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"bad.txt line 2"):
        coco.read_yolo_labels(path)


def test_split_lists_images_in_name_order_with_their_boxes(tree: Path) -> None:
    samples = coco.yolo_split(tree, "train2017")
    assert [s.path.name for s in samples] == ["000000000001.jpg", "000000000002.jpg", "000000000003.jpg"]
    assert [len(s.boxes) for s in samples] == [1, 2, 0]
    assert coco.image_paths(tree, "train2017") == [s.path for s in samples]


def test_missing_split_is_a_layout_error(tree: Path) -> None:
    with pytest.raises(coco.CocoLayoutError, match="test2017"):
        coco.yolo_split(tree, "test2017")


def test_box_to_pixels_is_top_left_width_height() -> None:
    assert coco.YoloBox(0, 0.5, 0.5, 0.5, 0.2).to_pixels(200, 100) == pytest.approx([50.0, 40.0, 100.0, 20.0])


def test_ground_truth_has_pixel_boxes_areas_and_ids_in_file_order(tree: Path) -> None:
    gt, paths = coco.yolo_ground_truth(tree, "train2017", num_classes=3)
    assert [p.name for p in paths] == ["000000000001.jpg", "000000000002.jpg", "000000000003.jpg"]
    assert gt["images"] == [
        {"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 80},
        {"id": 2, "file_name": "000000000002.jpg", "width": 200, "height": 100},
        {"id": 3, "file_name": "000000000003.jpg", "width": 64, "height": 64},
    ]
    first, car, person = gt["annotations"]
    assert first == {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 40.0, 80.0], "area": 3200.0,
                     "iscrowd": 0}  # fmt: skip
    assert car["image_id"] == 2 and car["category_id"] == 2
    assert car["bbox"] == pytest.approx([50.0, 40.0, 100.0, 20.0]) and car["area"] == pytest.approx(2000.0)
    assert person["id"] == 3 and person["bbox"] == pytest.approx([40.0, 70.0, 20.0, 10.0])
    assert gt["categories"] == [{"id": i, "name": str(i)} for i in range(3)]


def test_coco_json_is_read_and_checked(tree: Path) -> None:
    data = coco.load_coco_json(tree, "train2017")
    assert data["images"][0]["file_name"] == "000000000002.jpg"
    with pytest.raises(coco.CocoLayoutError, match="instances_val2017"):
        coco.load_coco_json(tree, "val2017")
    (tree / "annotations/instances_val2017.json").write_text(json.dumps({"images": []}))
    with pytest.raises(coco.CocoLayoutError, match="annotations"):
        coco.load_coco_json(tree, "val2017")


# --- locate_coco128 ------------------------------------------------------------------------------


def test_an_unpacked_copy_is_found_without_a_mirror(tmp_path: Path) -> None:
    build_tree(tmp_path / "data" / "datasets")
    root = coco.locate_coco128(tmp_path / "data", tmp_path / "no-mirror")
    assert root == tmp_path / "data" / "datasets" / "coco128"


def test_no_copy_and_no_mirror_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(coco.CocoLayoutError, match="CV_DATASETS_MIRROR_DIR"):
        coco.locate_coco128(tmp_path / "data", tmp_path / "no-mirror")


def _mirror_script(mirror: Path, body: str) -> None:
    script = mirror / "coco128" / "unpack.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nset -eu\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_the_mirror_script_unpacks_into_the_data_dir(tmp_path: Path) -> None:
    source = build_tree(tmp_path / "source")
    _mirror_script(tmp_path / "mirror", f'mkdir -p "$1"\ncp -r "{source}" "$1/"\n')
    root = coco.locate_coco128(tmp_path / "data", tmp_path / "mirror")
    assert root == tmp_path / "data" / "datasets" / "coco128"
    assert len(coco.image_paths(root, "train2017")) == 3


def test_a_failing_mirror_script_reports_its_error(tmp_path: Path) -> None:
    _mirror_script(tmp_path / "mirror", 'echo "sha256 mismatch: coco128.tar.gz" >&2\nexit 1\n')
    with pytest.raises(coco.CocoLayoutError, match="sha256 mismatch"):
        coco.locate_coco128(tmp_path / "data", tmp_path / "mirror")


def test_a_script_that_leaves_the_tree_incomplete_is_an_error(tmp_path: Path) -> None:
    _mirror_script(tmp_path / "mirror", 'mkdir -p "$1/coco128/images/train2017"\n')
    with pytest.raises(coco.CocoLayoutError, match="incomplete"):
        coco.locate_coco128(tmp_path / "data", tmp_path / "mirror")
