"""TinyImageNet and locate() on a three-class tree in the original layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.training.data.conftest import TRAIN_NUMBERS, VAL, WNIDS, build_tiny_imagenet
from training.data.tiny_imagenet import FOLDER, DatasetLayoutError, Sample, TinyImageNet, locate

SORTED = sorted(WNIDS)


def test_class_indices_follow_sorted_wnids(tiny_root: Path) -> None:
    data = TinyImageNet(tiny_root)
    assert data.wnids == SORTED
    assert data.index == {wnid: i for i, wnid in enumerate(SORTED)}
    assert data.num_classes == 3


def test_duplicate_and_blank_wnid_lines_are_ignored(tiny_root: Path) -> None:
    (tiny_root / "wnids.txt").write_text("\n".join([*WNIDS, WNIDS[0], "", "  "]) + "\n")
    assert TinyImageNet(tiny_root).wnids == SORTED


def test_words_keep_only_the_classes(tiny_root: Path) -> None:
    words = TinyImageNet(tiny_root).words()
    assert list(words) == SORTED
    assert words["n01000001"] == "goldfish, Carassius auratus"


def test_class_names_take_the_first_term_of_words(tiny_root: Path) -> None:
    assert TinyImageNet(tiny_root).class_names() == ["goldfish", "tabby", "lemon"]


def test_class_name_falls_back_to_the_wnid(tiny_root: Path) -> None:
    (tiny_root / "words.txt").write_text("n01000001\tgoldfish, Carassius auratus\n")
    assert TinyImageNet(tiny_root).class_names() == ["goldfish", "n02000002", "n03000003"]
    (tiny_root / "words.txt").unlink()
    assert TinyImageNet(tiny_root).class_names() == SORTED


def test_train_lists_classes_in_index_order_and_files_sorted(tiny_root: Path) -> None:
    samples = TinyImageNet(tiny_root).train()
    assert len(samples) == 3 * len(TRAIN_NUMBERS)
    assert [s.label for s in samples] == [i for i in range(3) for _ in TRAIN_NUMBERS]
    first = [s.path.name for s in samples[: len(TRAIN_NUMBERS)]]
    assert first == ["n01000001_0.JPEG", "n01000001_1.JPEG", "n01000001_10.JPEG", "n01000001_2.JPEG"]
    assert all(s.path.is_file() for s in samples)  # the _boxes.txt files are not samples


def test_train_per_class_keeps_the_first_n(tiny_root: Path) -> None:
    samples = TinyImageNet(tiny_root).train(per_class=2)
    assert [(s.path.name, s.label) for s in samples] == [
        ("n01000001_0.JPEG", 0), ("n01000001_1.JPEG", 0),
        ("n02000002_0.JPEG", 1), ("n02000002_1.JPEG", 1),
        ("n03000003_0.JPEG", 2), ("n03000003_1.JPEG", 2),
    ]  # fmt: skip


def test_val_keeps_the_annotation_order(tiny_root: Path) -> None:
    samples = TinyImageNet(tiny_root).val()
    assert samples == [Sample(tiny_root / "val" / "images" / name, SORTED.index(wnid)) for name, wnid in VAL]


def test_val_with_an_unknown_wnid_is_an_error(tiny_root: Path) -> None:
    annotations = tiny_root / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_9.JPEG\tn04999999\t0\t0\t1\t1\n")
    # Five annotations, then the fixture's blank line 6 (skipped but counted): the bad one is line 7.
    with pytest.raises(DatasetLayoutError, match="line 7: unknown wnid"):
        TinyImageNet(tiny_root).val()


def test_val_with_a_short_line_is_an_error(tiny_root: Path) -> None:
    (tiny_root / "val" / "val_annotations.txt").write_text("val_0.JPEG\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        TinyImageNet(tiny_root).val()


def test_missing_wnids_is_a_layout_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"wnids\.txt is missing"):
        TinyImageNet(tmp_path)


def test_missing_train_folder_is_a_layout_error(tiny_root: Path) -> None:
    shutil.rmtree(tiny_root / "train" / "n02000002")
    with pytest.raises(DatasetLayoutError, match="missing train folder"):
        TinyImageNet(tiny_root).train()


def test_missing_val_annotations_is_a_layout_error(tiny_root: Path) -> None:
    (tiny_root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"val_annotations\.txt"):
        TinyImageNet(tiny_root).val()


def test_layout_error_is_a_file_not_found_error() -> None:
    assert issubclass(DatasetLayoutError, FileNotFoundError)


def test_locate_returns_an_existing_copy(tiny_root: Path, tmp_path: Path) -> None:
    assert locate(tiny_root.parent, tmp_path / "no-mirror") == tiny_root
    assert locate(tiny_root.parent) == tiny_root


def _fake_mirror(mirror: Path, source: Path) -> Path:
    """A mirror whose unpack.sh copies a prepared tree to ``DEST/tiny-imagenet-200``."""
    folder = mirror / FOLDER
    folder.mkdir(parents=True)
    script = folder / "unpack.sh"
    script.write_text(f'#!/bin/sh\nset -eu\nmkdir -p "$1"\ncp -R "{source}" "$1/{FOLDER}"\n')
    return mirror


def test_locate_unpacks_from_the_mirror(tmp_path: Path) -> None:
    source = build_tiny_imagenet(tmp_path / "prepared" / FOLDER)
    mirror = _fake_mirror(tmp_path / "mirror", source)
    data_dir = tmp_path / "data" / "datasets"  # does not exist yet
    root = locate(data_dir, mirror)
    assert root == data_dir / FOLDER
    assert len(TinyImageNet(root).train()) == 3 * len(TRAIN_NUMBERS)


def test_locate_unpacks_over_an_incomplete_copy(tmp_path: Path) -> None:
    source = build_tiny_imagenet(tmp_path / "prepared" / FOLDER)
    mirror = _fake_mirror(tmp_path / "mirror", source)
    data_dir = tmp_path / "data"
    (data_dir / "partial").mkdir(parents=True)  # no tiny-imagenet-200 yet
    assert locate(data_dir, mirror) == data_dir / FOLDER
    assert (data_dir / FOLDER / "val" / "val_annotations.txt").is_file()


def test_locate_reports_a_failing_unpack_script(tmp_path: Path) -> None:
    folder = tmp_path / "mirror" / FOLDER
    folder.mkdir(parents=True)
    (folder / "unpack.sh").write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(subprocess.CalledProcessError):
        locate(tmp_path / "data", tmp_path / "mirror")


@pytest.mark.parametrize("mirror", [None, "empty"])
def test_locate_without_a_copy_or_a_mirror_says_how_to_get_one(tmp_path: Path, mirror: str | None) -> None:
    mirror_dir = tmp_path / mirror if mirror else None
    with pytest.raises(DatasetLayoutError, match=r"download_datasets\.py"):
        locate(tmp_path / "data", mirror_dir)
