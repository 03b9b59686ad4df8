"""install(): official sources from a local HTTP server, a fake mirror, skips and failures."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.unit.training.data.conftest import WNIDS, build_tiny_imagenet, make_zip, sha256
from training.data import download
from training.data.download import (
    COCO_NAMES,
    DATASETS,
    HELD_OUT,
    coco128_problems,
    install,
    tiny_imagenet_problems,
)
from training.data.fetch import ChecksumError, DownloadError, LayoutError, NetworkError, Remote
from training.data.tiny_imagenet import TinyImageNet

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def tiny_zip(http_server: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Stanford zip's layout (a top-level ``tiny-imagenet-200/``) served locally; returns the request log."""
    base, www, requests = http_server
    tree = build_tiny_imagenet(tmp_path / "zipped" / "tiny-imagenet-200")
    make_zip(www / "tiny-imagenet-200.zip", tree.parent)
    monkeypatch.setattr(download, "TINY_IMAGENET_ZIP", Remote(f"{base}/tiny-imagenet-200.zip", "tiny-imagenet-200.zip"))
    return requests


def build_coco128(root: Path, *, labels: int = 126) -> Path:
    """COCO128 as Ultralytics zips it: 128 images, 126 label files (contents do not matter here)."""
    for i in range(128):
        (root / "images" / "train2017").mkdir(parents=True, exist_ok=True)
        (root / "images" / "train2017" / f"{i:012d}.jpg").write_bytes(b"jpg")
    for i in range(labels):
        (root / "labels" / "train2017").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train2017" / f"{i:012d}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "LICENSE").write_text("AGPL-3.0\n")
    return root


@pytest.fixture
def coco_zips(http_server: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base, www, _ = http_server
    make_zip(www / "coco128.zip", build_coco128(tmp_path / "zipped" / "coco128").parent)
    with zipfile.ZipFile(www / "val2017.zip", "w") as zf:
        for i in reversed(range(HELD_OUT + 5)):  # out of order, more than needed
            zf.writestr(f"val2017/{1000 + i:012d}.jpg", b"jpg")
        zf.writestr("val2017/readme.txt", "not an image")
    monkeypatch.setattr(download, "COCO128_ZIP", Remote(f"{base}/coco128.zip", "coco128.zip"))
    monkeypatch.setattr(download, "COCO_VAL2017_ZIP", Remote(f"{base}/val2017.zip", "val2017.zip"))
    return www


# --- layout checks ---------------------------------------------------------------------------------


def test_a_whole_tiny_imagenet_has_no_problems(tiny_root: Path) -> None:
    assert tiny_imagenet_problems(tiny_root) == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda r: (r / "wnids.txt").unlink(), "wnids.txt is missing or empty"),
        (lambda r: (r / "wnids.txt").write_text("\n"), "wnids.txt is missing or empty"),
        (lambda r: (r / "words.txt").unlink(), "words.txt is missing"),
        (lambda r: shutil.rmtree(r / "train" / WNIDS[0]), "1 of 3 classes have no train images"),
        (lambda r: (r / "val" / "val_annotations.txt").unlink(), "val_annotations.txt is missing"),
        (lambda r: (r / "val" / "images" / "val_3.JPEG").unlink(), "val/images holds 4 images where"),
    ],
)
def test_tiny_imagenet_problems_name_what_is_missing(tiny_root: Path, damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    damage(tiny_root)
    assert any(problem in p for p in tiny_imagenet_problems(tiny_root))


def test_coco128_problems(tmp_path: Path) -> None:
    root = build_coco128(tmp_path / "coco128", labels=0)
    assert coco128_problems(root) == ["labels/train2017 has no label files", "data.yaml is missing"]
    (root / "data.yaml").write_text("names: {}\n")
    (root / "labels" / "train2017").mkdir(parents=True)
    (root / "labels" / "train2017" / "a.txt").write_text("")
    assert coco128_problems(root) == []
    assert coco128_problems(root, held_out=True) == ["images/val2017 holds 0 images, want 128"]


# --- official sources ------------------------------------------------------------------------------


def test_install_tiny_imagenet_from_the_official_zip(tiny_zip: list[str], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    root = install("tiny_imagenet", data_dir, progress=False)
    assert root == data_dir / "tiny-imagenet-200"
    data = TinyImageNet(root)
    assert data.wnids == sorted(WNIDS) and len(data.train()) == 12 and len(data.val()) == 5
    record = json.loads((data_dir / "tiny-imagenet-200.source.json").read_text())
    assert record["origin"] == "download"
    [file] = record["files"]
    assert file["source"].endswith("/tiny-imagenet-200.zip") and not file["verified"]
    served = tmp_path / "www" / "tiny-imagenet-200.zip"
    assert (file["size"], file["sha256"]) == (served.stat().st_size, sha256(served))
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "downloads",
        "tiny-imagenet-200",
        "tiny-imagenet-200.source.json",
    ]
    assert list((data_dir / "downloads").iterdir()) == []  # the archive is removed after the unpack


def test_install_skips_a_complete_copy_and_force_redoes_it(tiny_zip: list[str], tmp_path: Path) -> None:
    install("tiny_imagenet", tmp_path, progress=False)
    marker = tmp_path / "tiny-imagenet-200" / "mine.txt"
    marker.write_text("kept")
    install("tiny_imagenet", tmp_path, progress=False)
    assert len(tiny_zip) == 1 and marker.exists()
    install("tiny_imagenet", tmp_path, progress=False, force=True, keep_archives=True)
    assert len(tiny_zip) == 2 and not marker.exists()
    assert (tmp_path / "downloads" / "tiny-imagenet-200.zip").is_file()


def test_install_replaces_an_incomplete_copy(tiny_zip: list[str], tmp_path: Path) -> None:
    (tmp_path / "tiny-imagenet-200" / "train").mkdir(parents=True)
    (tmp_path / "tiny-imagenet-200" / "wnids.txt").write_text("\n".join(WNIDS))
    install("tiny_imagenet", tmp_path, progress=False)
    assert tiny_imagenet_problems(tmp_path / "tiny-imagenet-200") == []


def test_install_refuses_an_archive_in_another_layout(http_server: tuple, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base, www, _ = http_server
    tree = build_tiny_imagenet(tmp_path / "zipped" / "tiny-imagenet-200")
    shutil.rmtree(tree / "val" / "images")  # e.g. a copy with val re-sorted into class folders
    make_zip(www / "t.zip", tree.parent)
    monkeypatch.setattr(download, "TINY_IMAGENET_ZIP", Remote(f"{base}/t.zip", "t.zip"))
    with pytest.raises(LayoutError, match="not the original layout: val/images holds 0 images"):
        install("tiny_imagenet", tmp_path / "data", progress=False)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads"]  # no half copy, no staging


def test_install_refuses_an_archive_without_the_data_set(http_server: tuple, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base, www, _ = http_server
    with zipfile.ZipFile(www / "t.zip", "w") as zf:
        zf.writestr("something/else.txt", "?")
    monkeypatch.setattr(download, "TINY_IMAGENET_ZIP", Remote(f"{base}/t.zip", "t.zip"))
    with pytest.raises(LayoutError, match=r"no wnids\.txt found"):
        install("tiny_imagenet", tmp_path, progress=False)


def test_install_without_network_keeps_the_old_copy(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "TINY_IMAGENET_ZIP", Remote("http://127.0.0.1:9/t.zip", "t.zip"))
    with pytest.raises(NetworkError, match="--from-mirror"):
        install("tiny_imagenet", tiny_root.parent, force=True, progress=False)
    assert tiny_imagenet_problems(tiny_root) == []


def test_install_coco128_writes_data_yaml_and_the_held_out_images(coco_zips: Path, tmp_path: Path) -> None:
    root = install("coco128", tmp_path, held_out=True, progress=False)
    assert coco128_problems(root, held_out=True) == []
    names = yaml.safe_load((root / "data.yaml").read_text())
    assert names["train"] == names["val"] == "images/train2017"
    assert names["names"] == dict(enumerate(COCO_NAMES)) and len(COCO_NAMES) == 80
    held_out = sorted(p.name for p in (root / "images" / "val2017").iterdir())
    assert held_out == [f"{1000 + i:012d}.jpg" for i in range(HELD_OUT)]
    record = json.loads((tmp_path / "coco128.source.json").read_text())
    assert [f["file"] for f in record["files"]] == ["coco128.zip", "val2017.zip"]


def test_install_coco128_without_held_out_images(coco_zips: Path, tmp_path: Path) -> None:
    root = install("coco128", tmp_path, progress=False)
    assert not (root / "images" / "val2017").exists() and (root / "LICENSE").is_file()
    assert install("coco128", tmp_path, progress=False) == root  # complete: skipped


def test_install_coco128_with_too_few_val2017_images(coco_zips: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(coco_zips / "val2017.zip", "w") as zf:
        zf.writestr("val2017/000000000139.jpg", b"jpg")
    with pytest.raises(LayoutError, match="holds 1 val2017 images"):
        install("coco128", tmp_path, held_out=True, progress=False)


def test_install_tiny_imagenet_from_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Kaggle copies nest the folder one level deeper; the root is found by its wnids.txt.
    tree = build_tiny_imagenet(tmp_path / "kaggle" / "tiny-imagenet-200" / "tiny-imagenet-200")
    archive = make_zip(tmp_path / "kaggle.zip", tree.parent.parent)
    seen = []

    def fake_kaggle(slug: str, folder: Path) -> download.Fetched:
        seen.append(slug)
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(archive, folder / "tiny-imagenet.zip"))
        return download.Fetched(f"kaggle:{slug}", path, path.stat().st_size, sha256(path), False)

    monkeypatch.setattr(download, "fetch_kaggle", fake_kaggle)
    root = install("tiny_imagenet", tmp_path / "data", kaggle="someone/tiny-imagenet")
    assert seen == ["someone/tiny-imagenet"] and tiny_imagenet_problems(root) == []


def test_install_unknown_data_set(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unknown data set 'imagenet'"):
        install("imagenet", tmp_path)


# --- mirror ----------------------------------------------------------------------------------------


def test_install_from_a_mirror(tiny_mirror: Path, tmp_path: Path) -> None:
    root = install("tiny_imagenet", tmp_path / "data", mirror=tiny_mirror)
    assert tiny_imagenet_problems(root) == [] and len(TinyImageNet(root).val()) == 5
    record = json.loads((tmp_path / "data" / "tiny-imagenet-200.source.json").read_text())
    assert record["origin"] == "mirror" and all(f["verified"] for f in record["files"])
    assert (tiny_mirror / "tiny-imagenet-200" / "val.tar.gz").is_file()  # mirror files are never removed


def test_install_from_a_damaged_mirror_changes_nothing(tiny_mirror: Path, tiny_root: Path) -> None:
    (tiny_mirror / "tiny-imagenet-200" / "val.tar.gz").write_bytes(b"broken")
    with pytest.raises(ChecksumError, match=r"val\.tar\.gz has sha256"):
        install("tiny_imagenet", tiny_root.parent, mirror=tiny_mirror, force=True)
    assert tiny_imagenet_problems(tiny_root) == []
    assert sorted(p.name for p in tiny_root.parent.iterdir()) == ["tiny-imagenet-200"]


def test_registry_lists_both_data_sets() -> None:
    assert {name: d.folder for name, d in DATASETS.items()} == {
        "tiny_imagenet": "tiny-imagenet-200",
        "coco128": "coco128",
    }
