"""COCO128 and the held-out val2017 subset in the Ultralytics (YOLO) and COCO JSON layouts.

::

    coco128/
      data.yaml                              names: the 80 classes, id order
      images/<split>/*.jpg                   train2017 (128), val2017 (128, held out)
      labels/<split>/<stem>.txt              one ``cls cx cy w h`` line per box, normalised;
                                             an image without a file is background
      annotations/instances_<split>.json     standard COCO (train2017 only)

:func:`yolo_ground_truth` turns a YOLO split into the COCO dict that pycocotools reads, so
the YOLO labels of val2017 (which has no JSON) can be scored with ``COCOeval``.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

log = logging.getLogger(__name__)

FOLDER = "coco128"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CocoLayoutError(FileNotFoundError):
    """The folder does not hold the expected COCO/YOLO layout, or no mirror can fill it."""


@dataclass(frozen=True)
class YoloBox:
    """One labelled box, normalised to the image size (YOLO convention)."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float

    def to_pixels(self, width: int, height: int) -> list[float]:
        """COCO ``[x, y, w, h]`` in pixels of a ``width`` x ``height`` image."""
        bw, bh = self.w * width, self.h * height
        return [self.cx * width - bw / 2, self.cy * height - bh / 2, bw, bh]


@dataclass(frozen=True)
class YoloSample:
    """One image of a YOLO split and its boxes (empty for a background image)."""

    path: Path
    boxes: tuple[YoloBox, ...]


def read_names(data_yaml: Path) -> list[str]:
    """Class names in id order from an Ultralytics ``data.yaml`` (``names`` as a list or an id map)."""
    data = yaml.safe_load(Path(data_yaml).read_text())
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise CocoLayoutError(f"{data_yaml}: class ids are not 0..{len(ids) - 1}")
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise CocoLayoutError(f"{data_yaml} has no `names` list")


def read_yolo_labels(path: Path) -> tuple[YoloBox, ...]:
    """The boxes of one label file; a missing file means background (no boxes).

    Raises:
        ValueError: a line does not hold five numbers.
    """
    if not path.is_file():
        return ()
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"{path.name} line {number}: expected `cls cx cy w h`, got {line!r}")
        cls, cx, cy, w, h = fields
        boxes.append(YoloBox(int(cls), float(cx), float(cy), float(w), float(h)))
    return tuple(boxes)


def yolo_split(root: Path, split: str) -> list[YoloSample]:
    """Every image of ``images/<split>`` (sorted by name) with its boxes from ``labels/<split>``.

    Raises:
        CocoLayoutError: the split has no image folder.
    """
    images = Path(root) / "images" / split
    if not images.is_dir():
        raise CocoLayoutError(f"missing image folder {images}")
    labels = Path(root) / "labels" / split
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [YoloSample(path, read_yolo_labels(labels / f"{path.stem}.txt")) for path in paths]


def image_paths(root: Path, split: str) -> list[Path]:
    """The image files of a split, sorted by name."""
    return [sample.path for sample in yolo_split(root, split)]


def load_coco_json(root: Path, split: str) -> dict[str, Any]:
    """The COCO annotation dict ``annotations/instances_<split>.json``."""
    path = Path(root) / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        raise CocoLayoutError(f"missing {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise CocoLayoutError(f"{path.name} has no {key!r}")
    return data


def yolo_ground_truth(root: Path, split: str, num_classes: int = 80) -> tuple[dict[str, Any], list[Path]]:
    """A pycocotools ground-truth dict built from a YOLO split.

    Image ids are 1.. in sorted file order; category ids are the YOLO class ids; every box
    is non-crowd with its box area (YOLO labels carry no segmentation).

    Returns:
        The COCO dict (``images``, ``annotations``, ``categories``) and the image paths in id order.
    """
    samples = yolo_split(root, split)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, sample in enumerate(samples, start=1):
        with Image.open(sample.path) as image:
            width, height = image.size
        images.append({"id": image_id, "file_name": sample.path.name, "width": width, "height": height})
        for box in sample.boxes:
            bbox = box.to_pixels(width, height)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": box.class_id,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": str(i)} for i in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, [s.path for s in samples]


def _complete(root: Path) -> bool:
    return (root / "data.yaml").is_file() and all(
        (root / "images" / split).is_dir() and any((root / "images" / split).iterdir())
        for split in ("train2017", "val2017")
    )


def locate_coco128(data_dir: Path, datasets_mirror_dir: Path) -> Path:
    """The COCO128 root under ``<data_dir>/datasets``, unpacked from the mirror archives if needed.

    The mirror's ``unpack.sh`` checks the archives' SHA-256 sums and the image and label
    counts (train2017 and the held-out val2017) before this returns.

    Args:
        data_dir: ``CV_DATA_DIR``; COCO128 lives (or is unpacked) under its ``datasets/``.
        datasets_mirror_dir: ``CV_DATASETS_MIRROR_DIR``, holding ``coco128/`` (archives and ``unpack.sh``).

    Raises:
        CocoLayoutError: no unpacked copy and no mirror at ``<datasets_mirror_dir>/coco128``.
    """
    dest = data_dir / "datasets"
    root = dest / FOLDER
    if _complete(root):
        return root
    script = datasets_mirror_dir / FOLDER / "unpack.sh"
    if not script.is_file():
        raise CocoLayoutError(
            f"COCO128 is not unpacked under {dest} and the mirror has no {script}; "
            "set CV_DATASETS_MIRROR_DIR to the folder holding coco128/ (coco128.tar.gz, "
            "coco-val2017-first128.tar.gz, unpack.sh) or CV_DATA_DIR to where it is unpacked"
        )
    log.info("unpacking COCO128 from the mirror", extra={"mirror": str(script.parent), "dest": str(dest)})
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["sh", str(script), str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CocoLayoutError(f"{script} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    if not _complete(root):
        raise CocoLayoutError(f"{script} ran but {root} is incomplete")
    return root
