"""Fetch Tiny-ImageNet-200 and COCO128 and unpack them in their original layouts.

Two ways in, one result (``<data_dir>/tiny-imagenet-200``, ``<data_dir>/coco128``):

- the official sources over HTTP (:data:`TINY_IMAGENET_ZIP`, :data:`COCO128_ZIP`, and
  :data:`COCO_VAL2017_ZIP` on request), or a Kaggle copy of Tiny-ImageNet through the
  ``kaggle`` CLI;
- a mirror folder (``../shared/datasets``): its ``SHA256SUMS`` is checked, then its files
  are unpacked as its ``unpack.sh`` would, with no network at all.

The command line is :mod:`training.data.download_cli`.

Downloads are written to ``<name>.part`` and renamed only once complete and, where a sum is
known, once it matches. Each unpack happens in a hidden staging folder that replaces the
data set folder only after its layout checks out, so an interrupted run never leaves a half
copy that a later run would take for a whole one. What was used (URL or mirror file, size,
SHA-256) is recorded in ``<data_dir>/<folder>.source.json``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.data.fetch import (
    DownloadError,
    Fetched,
    LayoutError,
    Remote,
    extract,
    fetch,
    fetch_kaggle,
    unpack_mirror,
)

log = logging.getLogger(__name__)

# The official sources. None publishes a SHA-256, so what was received is recorded instead.
TINY_IMAGENET_ZIP = Remote("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip")
COCO128_ZIP = Remote("https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip", "coco128.zip")
COCO_VAL2017_ZIP = Remote("http://images.cocodataset.org/zips/val2017.zip", "val2017.zip")  # 5,000 images, ~780 MB
HELD_OUT = 128  # the first 128 val2017 images by file name, as in the mirror

# Standard COCO-80 order (YOLO class id = index), as in Ultralytics' coco128.yaml.
COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip


def _find_root(staging: Path, marker: str, depth: int = 3) -> Path:
    """The shallowest folder under ``staging`` that holds ``marker`` (archives differ in nesting)."""
    level = [staging]
    for _ in range(depth + 1):
        for folder in sorted(level):
            if (folder / marker).exists():
                return folder
        level = [child for folder in level for child in folder.iterdir() if child.is_dir()]
    raise LayoutError(f"no {marker} found in what was unpacked; is this the right archive?")


# --- the data sets --------------------------------------------------------------------------------


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


def tiny_imagenet_problems(root: Path, held_out: bool = False) -> list[str]:
    """What keeps ``root`` from being a whole Tiny-ImageNet-200 (nothing when it is one).

    ``held_out`` is unused: it is there for the :class:`Dataset` signature (COCO128 uses it).
    """
    wnids_file = root / "wnids.txt"
    wnids = sorted({w.strip() for w in wnids_file.read_text().split() if w.strip()}) if wnids_file.is_file() else []
    if not wnids:
        return [f"{wnids_file} is missing or empty"]
    problems = [] if (root / "words.txt").is_file() else ["words.txt is missing"]
    empty = [wnid for wnid in wnids if not _count(root / "train" / wnid / "images", "*.JPEG")]
    if empty:
        problems.append(f"{len(empty)} of {len(wnids)} classes have no train images (train/{empty[0]}/images)")
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        return [*problems, "val/val_annotations.txt is missing"]
    listed = sum(1 for line in annotations.read_text().splitlines() if line.strip())
    found = _count(root / "val" / "images", "*.JPEG")
    if found != listed:
        problems.append(f"val/images holds {found} images where val_annotations.txt lists {listed}")
    return problems


def coco128_problems(root: Path, held_out: bool = False) -> list[str]:
    """What keeps ``root`` from being a whole COCO128 (with the held-out val2017 images if asked)."""
    wanted = [("train2017", 128)] + ([("val2017", HELD_OUT)] if held_out else [])
    problems = [
        f"images/{split} holds {found} images, want {want}"
        for split, want in wanted
        if (found := _count(root / "images" / split, "*.jpg")) != want
    ]
    if not _count(root / "labels" / "train2017", "*.txt"):
        problems.append("labels/train2017 has no label files")
    if not (root / "data.yaml").is_file():
        problems.append("data.yaml is missing")
    return problems


@dataclass(frozen=True)
class Options:
    """How to fetch from the official sources."""

    downloads: Path
    kaggle: str | None = None
    held_out: bool = False
    progress: bool = True


def _official_tiny_imagenet(staging: Path, options: Options) -> list[Fetched]:
    if options.kaggle:
        fetched = fetch_kaggle(options.kaggle, options.downloads)
    else:
        fetched = fetch(TINY_IMAGENET_ZIP, options.downloads, progress=options.progress)
    extract(fetched.path, staging)
    return [fetched]


def _official_coco128(staging: Path, options: Options) -> list[Fetched]:
    fetched = [fetch(COCO128_ZIP, options.downloads, progress=options.progress)]
    extract(fetched[0].path, staging)
    root = _find_root(staging, "images/train2017")
    if not (root / "data.yaml").is_file():
        (root / "data.yaml").write_text(_data_yaml())
    if options.held_out:
        fetched.append(fetch(COCO_VAL2017_ZIP, options.downloads, progress=options.progress))
        _extract_held_out(fetched[-1].path, root / "images" / "val2017")
    return fetched


def _data_yaml() -> str:
    """Ultralytics' data file as the mirror ships it: no ``path`` key, so its folder is the root."""
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(COCO_NAMES))
    return f"train: images/train2017\nval: images/train2017\n\nnames:\n{names}"


def _extract_held_out(archive: Path, out: Path) -> None:
    """The first ``HELD_OUT`` images of val2017 by file name, without their labels."""
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if re.fullmatch(r"val2017/\d+\.jpg", n))[:HELD_OUT]
        if len(names) < HELD_OUT:
            raise LayoutError(f"{archive.name} holds {len(names)} val2017 images, want at least {HELD_OUT}")
        for name in names:
            with zf.open(name) as src, (out / Path(name).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)


@dataclass(frozen=True)
class Dataset:
    """One data set: its folder, a path only its root holds, its layout check and official source."""

    folder: str
    marker: str
    problems: Callable[[Path, bool], list[str]]
    official: Callable[[Path, Options], list[Fetched]]


DATASETS: dict[str, Dataset] = {
    "tiny_imagenet": Dataset("tiny-imagenet-200", "wnids.txt", tiny_imagenet_problems, _official_tiny_imagenet),
    "coco128": Dataset("coco128", "images/train2017", coco128_problems, _official_coco128),
}
# Other spellings ``--dataset`` takes, after lower-casing and ``-`` -> ``_``: the folder names, no separator.
ALIASES = {"tiny_imagenet_200": "tiny_imagenet", "tinyimagenet": "tiny_imagenet", "coco_128": "coco128"}


def dataset_name(text: str) -> str:
    """The canonical name of a ``--dataset`` spelling (``tiny-imagenet``, ``Tiny_ImageNet`` -> ``tiny_imagenet``)."""
    key = text.strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def mirror_holds(mirror: Path, name: str) -> bool:
    """Whether the mirror folder ``mirror`` has the data set ``name`` (its ``<folder>/SHA256SUMS``)."""
    return (Path(mirror) / DATASETS[name].folder / "SHA256SUMS").is_file()


def install(
    name: str,
    data_dir: Path,
    *,
    mirror: Path | None = None,
    kaggle: str | None = None,
    held_out: bool = False,
    force: bool = False,
    progress: bool = True,
    keep_archives: bool = False,
) -> Path:
    """Make ``<data_dir>/<folder>`` a whole copy of the data set ``name``; returns that folder.

    Args:
        name: A key of :data:`DATASETS`.
        data_dir: Where data sets live (downloads go to ``<data_dir>/downloads``).
        mirror: A folder holding ``<folder>/SHA256SUMS`` and its files; no network when given.
        kaggle: ``OWNER/DATASET`` to take Tiny-ImageNet from Kaggle instead of Stanford.
        held_out: Also fetch the first 128 COCO val2017 images (a mirror always has them).
        force: Unpack again even when a whole copy is there.
        progress: Show download progress bars.
        keep_archives: Keep downloaded archives in ``<data_dir>/downloads``.

    Raises:
        DownloadError: with a message that says what went wrong and what to do.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    dataset, data_dir = DATASETS[name], Path(data_dir)
    root, held_out = data_dir / dataset.folder, held_out or mirror is not None
    if not force and not dataset.problems(root, held_out):
        log.info("%s is already complete in %s; skipped (use --force to unpack again)", name, root)
        return root
    if mirror is not None and not mirror_holds(mirror, name):
        raise DownloadError(
            f"{mirror} is not a data set mirror: it has no {dataset.folder}/SHA256SUMS "
            f"(--from-mirror takes the folder that holds {dataset.folder}/, such as ../shared/datasets)"
        )
    staging = data_dir / f".{dataset.folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if mirror is not None:
            fetched = unpack_mirror(Path(mirror) / dataset.folder, staging)
        else:
            options = Options(data_dir / "downloads", kaggle=kaggle, held_out=held_out, progress=progress)
            fetched = dataset.official(staging, options)
        unpacked = _find_root(staging, dataset.marker)
        if problems := dataset.problems(unpacked, held_out):
            raise LayoutError(f"{name} as unpacked is not the original layout: {'; '.join(problems)}")
        if root.exists():
            log.info("replacing %s", root)
            shutil.rmtree(root)
        unpacked.replace(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_record(data_dir / f"{dataset.folder}.source.json", name, "mirror" if mirror else "download", fetched)
    if mirror is None and not keep_archives:
        for item in fetched:
            item.path.unlink(missing_ok=True)
    log.info("%s unpacked to %s", name, root)
    return root


def _write_record(path: Path, name: str, origin: str, fetched: list[Fetched]) -> None:
    record = {
        "dataset": name,
        "origin": origin,
        "unpacked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": [item.record() for item in fetched],
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
