"""The download command line: which source each data set comes from, its defaults, its spellings, both scripts."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

from training.data import download
from training.data.download import dataset_name, tiny_imagenet_problems
from training.data.download_cli import main

REPO = Path(__file__).resolve().parents[4]
SCRIPTS = [REPO / "scripts" / "download_datasets.py", REPO / "scripts" / "setup" / "download_datasets.py"]


@pytest.fixture
def cv_env(tmp_path: Path, tiny_mirror: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CV_DATA_DIR and CV_DATASETS_MIRROR_DIR in tmp_path: the CLI's defaults come from settings."""
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tiny_mirror))
    return tmp_path / "data" / "datasets"


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path | None]]:
    """install() replaced by a recorder of (data set, mirror or None for the official source)."""
    calls: list[tuple[str, Path | None]] = []

    def record(name: str, data_dir: Path, *, mirror: Path | None = None, **_: Any) -> Path:
        calls.append((name, mirror))
        return data_dir / name

    monkeypatch.setattr(download, "install", record)
    return calls


def fake_mirror(folder: Path, *datasets: str) -> Path:
    """A mirror folder holding ``datasets`` as far as the source choice looks (their SHA256SUMS)."""
    for name in datasets:
        (folder / download.DATASETS[name].folder).mkdir(parents=True)
        (folder / download.DATASETS[name].folder / "SHA256SUMS").write_text("")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- where from --------------------------------------------------------------------------------------


def test_no_arguments_take_both_data_sets_from_the_mirror_that_holds_them(
    tmp_path: Path, installs: list, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = fake_mirror(tmp_path / "mirror", "tiny_imagenet", "coco128")
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(mirror))
    caplog.set_level("INFO")
    assert main([]) == 0
    assert installs == [("tiny_imagenet", mirror), ("coco128", mirror)]
    tiny = mirror / "tiny-imagenet-200"
    assert f"tiny_imagenet: from the mirror folder {tiny} (CV_DATASETS_MIRROR_DIR;" in caplog.text
    assert f"coco128: from the mirror folder {mirror / 'coco128'}" in caplog.text


def test_no_arguments_download_both_data_sets_without_a_mirror(
    tmp_path: Path, installs: list, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tmp_path / "nowhere"))
    caplog.set_level("INFO")
    assert main([]) == 0
    assert installs == [("tiny_imagenet", None), ("coco128", None)]
    assert f"tiny_imagenet: from the official source {download.TINY_IMAGENET_ZIP.url} (no mirror" in caplog.text
    assert f"coco128: from the official source {download.COCO128_ZIP.url} (no mirror of it in" in caplog.text


def test_auto_takes_what_the_mirror_holds_and_downloads_the_rest(
    tmp_path: Path, installs: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = fake_mirror(tmp_path / "mirror", "tiny_imagenet")
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(mirror))
    assert main(["--source", "auto"]) == 0
    assert installs == [("tiny_imagenet", mirror), ("coco128", None)]


def test_source_official_downloads_even_with_a_mirror(
    tmp_path: Path, installs: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(fake_mirror(tmp_path / "mirror", "tiny_imagenet", "coco128")))
    assert main(["--source", "official"]) == 0
    assert installs == [("tiny_imagenet", None), ("coco128", None)]


@pytest.mark.parametrize("extra", [["--kaggle", "a/b"], ["--coco-val2017"]])
def test_download_options_make_auto_download(
    tmp_path: Path, installs: list, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(fake_mirror(tmp_path / "mirror", "tiny_imagenet", "coco128")))
    assert main(extra) == 0
    assert installs == [("tiny_imagenet", None), ("coco128", None)]


def test_from_mirror_and_source_mirror_never_download(tmp_path: Path, installs: list) -> None:
    mirror = tmp_path / "empty"  # install() itself refuses a folder without the data set
    assert main(["--dataset", "coco128", "--from-mirror", str(mirror)]) == 0
    assert main(["--dataset", "coco128", "--source", "mirror"]) == 0
    assert installs[0] == ("coco128", mirror) and installs[1][1] is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["--from-mirror", "--source", "official"],
        ["--from-mirror", "--kaggle", "a/b"],
        ["--from-mirror", "--coco-val2017"],
        ["--source", "mirror", "--kaggle", "a/b"],
        ["--source", "mirror", "--coco-val2017"],
    ],
)
def test_main_refuses_contradictory_sources(cv_env: Path, installs: list, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and installs == []


def test_no_source_options_unpack_the_settings_mirror_for_real(cv_env: Path) -> None:
    assert main(["--dataset", "tiny_imagenet"]) == 0
    assert tiny_imagenet_problems(cv_env / "tiny-imagenet-200") == []
    assert json.loads((cv_env / "tiny-imagenet-200.source.json").read_text())["origin"] == "mirror"


# --- data set names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("tiny_imagenet", "tiny_imagenet"),
        ("tiny-imagenet", "tiny_imagenet"),
        ("Tiny_ImageNet", "tiny_imagenet"),
        ("tiny-imagenet-200", "tiny_imagenet"),
        ("coco128", "coco128"),
        ("coco-128", "coco128"),
        ("ALL", "all"),
    ],
)
def test_dataset_spellings(spelling: str, name: str, installs: list, cv_env: Path) -> None:
    assert dataset_name(spelling) == name
    assert main(["--dataset", spelling, "--source", "official"]) == 0
    assert [n for n, _ in installs] == (["tiny_imagenet", "coco128"] if name == "all" else [name])


def test_an_unknown_dataset_lists_the_canonical_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "imagenet"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.split("invalid choice: 'imagenet' (choose from ")[1]
    assert error.replace("'", "").startswith("tiny_imagenet, coco128, all)")


# --- the command line as before ----------------------------------------------------------------------


def test_main_unpacks_from_the_settings_mirror_into_the_settings_data_dir(cv_env: Path) -> None:
    assert main(["--dataset", "tiny_imagenet", "--from-mirror"]) == 0
    assert tiny_imagenet_problems(cv_env / "tiny-imagenet-200") == []


def test_main_with_explicit_folders(cv_env: Path, tiny_mirror: Path, tmp_path: Path) -> None:
    assert (
        main(["--dataset", "tiny_imagenet", "--from-mirror", str(tiny_mirror), "--data-dir", str(tmp_path / "x")]) == 0
    )
    assert (tmp_path / "x" / "tiny-imagenet-200" / "wnids.txt").is_file()


def test_main_reports_errors_and_fails(cv_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    # `all` goes through tiny_imagenet, then stops at COCO128, which the fake mirror lacks.
    assert main(["--dataset", "all", "--from-mirror", "--no-progress"]) == 1
    assert "error:" in caplog.text and "has no coco128/SHA256SUMS" in caplog.text
    assert (cv_env / "tiny-imagenet-200").is_dir()


def test_main_help_names_every_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for url in (download.TINY_IMAGENET_ZIP.url, download.COCO128_ZIP.url, download.COCO_VAL2017_ZIP.url):
        assert url in text
    assert "Kaggle" in text and "--from-mirror" in text and "--source" in text and "default: all" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_scripts_run_main_as_the_challenge_types_them(
    script: Path, cv_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The challenge's `python scripts/setup/download_datasets.py --dataset tiny_imagenet`: the settings mirror here.
    monkeypatch.setattr(sys, "argv", [script.name, "--dataset", "tiny_imagenet"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository root first
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    assert (cv_env / "tiny-imagenet-200" / "wnids.txt").is_file()
