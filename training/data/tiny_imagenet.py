"""Tiny-ImageNet-200 in its original layout.

::

    tiny-imagenet-200/
      wnids.txt                     200 WordNet ids
      words.txt                     wnid -> words, for all of WordNet
      train/<wnid>/images/*.JPEG    (500 per class originally; the mirror keeps 250)
      val/images/val_<n>.JPEG       10,000, flat
      val/val_annotations.txt       file, wnid, x0, y0, x1, y1 (tab-separated)

Class indices follow the sorted wnids, so they do not depend on the order of ``wnids.txt``.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER = "tiny-imagenet-200"


class DatasetLayoutError(FileNotFoundError):
    """The folder does not hold the expected Tiny-ImageNet layout."""


@dataclass(frozen=True)
class Sample:
    """One image and its class index."""

    path: Path
    label: int


class TinyImageNet:
    """Reads the class list, the readable names and the train and val samples."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        wnids_file = self.root / "wnids.txt"
        if not wnids_file.is_file():
            raise DatasetLayoutError(f"{self.root} is not a Tiny-ImageNet folder: {wnids_file.name} is missing")
        self.wnids: list[str] = sorted({line.strip() for line in wnids_file.read_text().splitlines() if line.strip()})
        self.index = {wnid: i for i, wnid in enumerate(self.wnids)}

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def words(self) -> dict[str, str]:
        """wnid -> the full ``words.txt`` entry (for example ``"goldfish, Carassius auratus"``)."""
        found: dict[str, str] = {}
        words_file = self.root / "words.txt"
        if words_file.is_file():
            for line in words_file.read_text().splitlines():
                wnid, _, words = line.partition("\t")
                if wnid in self.index:
                    found[wnid] = words.strip()
        return {wnid: found.get(wnid, wnid) for wnid in self.wnids}

    def class_names(self) -> list[str]:
        """A readable name per class index: the first term of its ``words.txt`` entry."""
        words = self.words()
        return [words[wnid].split(",")[0].strip() for wnid in self.wnids]

    def train(self, per_class: int | None = None) -> list[Sample]:
        """Train samples, class by class, files in sorted order; ``per_class`` keeps the first N of each."""
        samples: list[Sample] = []
        for wnid in self.wnids:
            folder = self.root / "train" / wnid / "images"
            if not folder.is_dir():
                raise DatasetLayoutError(f"missing train folder {folder}")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
            samples.extend(Sample(path, self.index[wnid]) for path in files[:per_class])
        return samples

    def val(self) -> list[Sample]:
        """The val split in ``val_annotations.txt`` order; lines naming unknown wnids are an error."""
        annotations = self.root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise DatasetLayoutError(f"missing {annotations}")
        samples: list[Sample] = []
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in self.index:
                raise DatasetLayoutError(f"{annotations.name} line {number}: unknown wnid in {line!r}")
            samples.append(Sample(self.root / "val" / "images" / fields[0], self.index[fields[1]]))
        return samples


def locate(data_dir: Path, mirror_dir: Path | None = None) -> Path:
    """The Tiny-ImageNet root under ``data_dir``, unpacked from the mirror folder if needed.

    Args:
        data_dir: Where data sets are unpacked (``<data_dir>/tiny-imagenet-200``).
        mirror_dir: A folder holding ``tiny-imagenet-200/unpack.sh`` and its archives
            (``../shared/datasets``), used when ``data_dir`` has no copy yet.

    Raises:
        DatasetLayoutError: neither a copy nor a usable mirror exists.
    """
    root = Path(data_dir) / FOLDER
    if (root / "wnids.txt").is_file() and (root / "val" / "val_annotations.txt").is_file():
        return root
    script = Path(mirror_dir) / FOLDER / "unpack.sh" if mirror_dir else None
    if script is None or not script.is_file():
        raise DatasetLayoutError(
            f"no Tiny-ImageNet under {data_dir} and no mirror to unpack from; run "
            "`python scripts/download_datasets.py --dataset tiny_imagenet` or pass a mirror folder"
        )
    log.info("unpacking Tiny-ImageNet from the mirror", extra={"mirror": str(script.parent), "dest": str(data_dir)})
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(script), str(data_dir)], check=True)
    return root
