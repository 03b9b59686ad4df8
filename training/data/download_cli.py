"""The ``scripts/download_datasets.py`` command line: which data sets, where to, and where from.

``--source auto`` (the default) takes each data set from the mirror folder ``CV_DATASETS_MIRROR_DIR``
when that folder holds it, and from its official source otherwise; the log names the source used.
The fetching and unpacking is :func:`training.data.download.install`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.data import download
from training.data.download import (
    COCO128_ZIP,
    COCO_VAL2017_ZIP,
    DATASETS,
    TINY_IMAGENET_ZIP,
    dataset_name,
    mirror_holds,
)
from training.data.fetch import DownloadError

log = logging.getLogger(__name__)

EPILOG = f"""\
sources:
  tiny_imagenet  {TINY_IMAGENET_ZIP.url}
                 Stanford CS231n's original zip (~240 MB, 500 train images per class).
                 --kaggle OWNER/DATASET takes the Kaggle copy named in the challenge instead,
                 through the `kaggle` CLI (`pip install kaggle` and an API token in
                 ~/.kaggle/kaggle.json); it must unpack to the original layout.
  coco128        {COCO128_ZIP.url}
                 Ultralytics' 128 train2017 images with YOLO labels; data.yaml is written beside
                 them. The held-out first 128 val2017 images come with the mirror (images and
                 YOLO labels) or, with --coco-val2017, from {COCO_VAL2017_ZIP.url}
                 (~780 MB; images only, no labels).

Where from (--source): `auto`, the default, takes each data set from the mirror folder
(CV_DATASETS_MIRROR_DIR) when that folder holds it, and from the official source above
otherwise; --kaggle and --coco-val2017 name official sources, so with them `auto` downloads.
`official` always downloads; `mirror` (or --from-mirror [DIR]) never does. The log says which
source each data set came from. From a mirror its SHA256SUMS are checked; the official sources
publish no SHA-256, so the size and SHA-256 received are recorded in DIR/<folder>.source.json.
"""

SOURCES = ("auto", "official", "mirror")


def build_parser(data_dir: Path, mirror_dir: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="download_datasets.py",
        description="Download Tiny-ImageNet-200 and COCO128 and unpack them in their original layouts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        type=dataset_name,
        default="all",
        choices=[*DATASETS, "all"],
        help="which data set (default: %(default)s; `-` and `_` alike, so tiny-imagenet works too)",
    )
    parser.add_argument("--data-dir", type=Path, default=data_dir, help="where to unpack (default: %(default)s)")
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help=f"auto (default): the mirror folder {mirror_dir} for each data set it holds, "
        "else the official source; official: always download; mirror: never download",
    )
    parser.add_argument(
        "--from-mirror",
        type=Path,
        nargs="?",
        const=mirror_dir,
        metavar="DIR",
        help=f"unpack from this mirror folder, never download (--source mirror; DIR defaults to {mirror_dir})",
    )
    parser.add_argument("--kaggle", metavar="OWNER/DATASET", help="take Tiny-ImageNet from this Kaggle data set")
    parser.add_argument("--coco-val2017", action="store_true", help="also fetch the held-out val2017 images")
    parser.add_argument("--force", action="store_true", help="unpack again even when a whole copy is there")
    parser.add_argument("--keep-archives", action="store_true", help="keep downloaded archives in DIR/downloads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _official_source(name: str, kaggle: str | None) -> str:
    if name == "tiny_imagenet" and kaggle:
        return f"Kaggle data set {kaggle}"
    return (download.TINY_IMAGENET_ZIP if name == "tiny_imagenet" else download.COCO128_ZIP).url


def pick_source(name: str, source: str, mirror: Path, *, kaggle: str | None, downloading: bool) -> Path | None:
    """The mirror folder to unpack ``name`` from, or None to download it; logs which, and why.

    Args:
        name: A key of :data:`DATASETS`.
        source: One of :data:`SOURCES`.
        mirror: The mirror folder (``--from-mirror DIR`` or ``CV_DATASETS_MIRROR_DIR``).
        kaggle: ``--kaggle``, named in the log line.
        downloading: Whether options of the official sources were given (``auto`` then downloads).
    """
    if source == "mirror" or (source == "auto" and not downloading and mirror_holds(mirror, name)):
        why = " (CV_DATASETS_MIRROR_DIR; --source official downloads instead)" if source == "auto" else ""
        log.info("%s: from the mirror folder %s%s", name, Path(mirror) / DATASETS[name].folder, why)
        return Path(mirror)
    if source == "official":
        why = ""
    elif downloading:
        why = " (--kaggle or --coco-val2017 asks for it)"
    else:
        why = f" (no mirror of it in {mirror}: set CV_DATASETS_MIRROR_DIR or pass --from-mirror DIR to use one)"
    log.info("%s: from the official source %s%s", name, _official_source(name, kaggle), why)
    return None


def main(argv: list[str] | None = None) -> int:
    """The ``scripts/download_datasets.py`` command line; returns the exit status."""
    from training.settings import TrainingSettings

    settings = TrainingSettings()
    parser = build_parser(settings.data_dir / "datasets", settings.datasets_mirror_dir)
    args = parser.parse_args(argv)
    if args.from_mirror is not None:
        if args.source == "official":
            parser.error("--from-mirror never downloads and --source official always does: choose one")
        args.source = "mirror"
    downloading = bool(args.kaggle or args.coco_val2017)
    if args.source == "mirror" and downloading:
        parser.error("a mirror downloads nothing: leave out --kaggle and --coco-val2017 (or use --source official)")
    mirror_dir = settings.datasets_mirror_dir if args.from_mirror is None else args.from_mirror
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    try:
        for name in names:
            download.install(
                name,
                args.data_dir,
                mirror=pick_source(name, args.source, mirror_dir, kaggle=args.kaggle, downloading=downloading),
                kaggle=args.kaggle,
                held_out=args.coco_val2017,
                force=args.force,
                progress=not args.no_progress,
                keep_archives=args.keep_archives,
            )
    except DownloadError as error:
        log.error("error: %s", error)
        return 1
    return 0
