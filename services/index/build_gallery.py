"""Index a folder of images (or the Tiny-ImageNet val split) into the search gallery.

Runs the embedder in this process and writes the gallery store the embedder service
loads at start-up (restart ``make serve`` to see new images, or add single images
through ``POST /api/v1/gallery`` while it runs).

Usage:
    python -m services.index.build_gallery --folder DIR [--limit N]
    python -m services.index.build_gallery --tiny-imagenet-val [--limit N] [--if-empty]
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kernel.errors import ServiceError
from kernel.logging import configure_logging
from services.config import ServingSettings, get_settings
from services.imaging import decode_image
from services.index.search import SearchEngine, embedding_space
from services.index.store import open_gallery
from services.models.worker import InferenceItem, ModelWorker, build_pool

log = logging.getLogger("services.index.build_gallery")  # also when run as __main__
THUMBNAIL_PX = 96
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
Record = tuple[bytes, dict[str, Any]]


def folder_images(folder: Path) -> Iterator[Record]:
    """Every image file below ``folder``, sorted, with its relative path as metadata."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        yield path.read_bytes(), {"filename": str(path.relative_to(folder))}


def tiny_imagenet_val(root: Path) -> Iterator[Record]:
    """Tiny-ImageNet val images with wnid and class words, unpacked or straight from val.tar.gz."""
    words = _words(root / "words.txt")
    unpacked = root / "val" / "val_annotations.txt"
    if unpacked.is_file():
        for name, wnid in _annotations(unpacked.read_text()):
            yield (root / "val" / "images" / name).read_bytes(), _meta(name, wnid, words)
        return
    with tarfile.open(root / "val.tar.gz") as archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
        text = _read(archive, members, "val/val_annotations.txt").decode()
        for name, wnid in _annotations(text):
            yield _read(archive, members, f"val/images/{name}"), _meta(name, wnid, words)


def _read(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    handle = archive.extractfile(members[name])
    if handle is None:
        raise FileNotFoundError(name)
    return handle.read()


def _words(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


def _annotations(text: str) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    return sorted(((r[0], r[1]) for r in rows), key=lambda r: int(r[0].split("_")[1].split(".")[0]))


def _meta(name: str, wnid: str, words: dict[str, str]) -> dict[str, Any]:
    return {"filename": name, "wnid": wnid, "label": words.get(wnid, wnid).split(",")[0].strip()}


def thumbnail(pixels: np.ndarray, size: int = THUMBNAIL_PX) -> str:
    """A small JPEG of ``pixels`` as a data URI (the demo page shows search hits with it)."""
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build(
    records: Iterator[Record],
    engine: SearchEngine,
    settings: ServingSettings,
    limit: int,
    batch: int = 32,
    *,
    thumbnails: bool = False,
) -> int:
    """Embed and store up to ``limit`` records (0 = all); returns how many were added.

    With ``thumbnails``, each item's metadata keeps a small JPEG data URI (``thumbnail``, ~2 KB), which every
    search hit then carries: the demo gallery does, a user's own gallery need not.
    """
    added, seen = 0, set()
    pending: list[tuple[np.ndarray, dict[str, Any]]] = []
    for data, meta in records:
        if limit and added + len(pending) >= limit:
            break
        try:
            image = decode_image(
                data, declared_type=None, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            )
        except ServiceError as exc:
            log.warning("skipped", extra={"file": meta.get("filename"), "error": exc.public_message})
            continue
        item_id = image.sha256[:32]
        if item_id in seen or engine.index.contains(item_id):
            continue  # already indexed: re-running the command adds only what is new
        seen.add(item_id)
        extra = {"thumbnail": thumbnail(image.pixels)} if thumbnails else {}
        pending.append((image.pixels, {**meta, "sha256": image.sha256, **extra}))
        if len(pending) == batch:
            added += _flush(engine, pending)
            pending = []
    return added + (_flush(engine, pending) if pending else 0)


def _flush(engine: SearchEngine, pending: list[tuple[Any, dict[str, Any]]]) -> int:
    outcomes = engine.embed([InferenceItem(image=pixels) for pixels, _ in pending])
    vectors = [o.prediction.result["embedding"] for o in outcomes if o.prediction]
    metas = [m for (_, m), o in zip(pending, outcomes, strict=True) if o.prediction]
    if vectors:
        ids = [m["sha256"][:32] for m in metas]
        (space,) = {embedding_space(o.prediction) for o in outcomes if o.prediction}  # one version per batch
        engine.index.add(np.asarray(vectors, dtype=np.float32), metas, ids=ids, embedder=space)
    log.info("indexed", extra={"batch": len(vectors), "gallery_size": engine.size()})
    return len(vectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index images into the similarity-search gallery.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="a folder of images (searched recursively)")
    source.add_argument("--tiny-imagenet-val", action="store_true", help="the Tiny-ImageNet val split from the mirror")
    parser.add_argument("--limit", type=int, default=0, help="index at most N images (0 = all)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--if-empty", action="store_true", help="do nothing when the gallery already has images")
    when.add_argument(
        "--if-stale",
        action="store_true",
        help="do nothing when the gallery already has images of the embedder version that would add more; empty a "
        "gallery of another version first (its searches answer 409) and build it again (`make gallery`)",
    )
    parser.add_argument(
        "--thumbnails", action="store_true", help="keep a small JPEG of each image in its metadata (for the demo page)"
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="empty the gallery first (after a new embedder version: 409 otherwise)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    index = open_gallery(settings)
    if args.rebuild:
        log.info("emptying the gallery", extra={"gallery_size": len(index), "embedder": index.embedder})
        index.clear()
    if args.if_empty and len(index):
        log.info("gallery already populated; nothing to do", extra={"gallery_size": len(index)})
        return 0
    root = settings.datasets_mirror_dir / "tiny-imagenet-200"
    if args.tiny_imagenet_val and not root.is_dir():
        log.warning("Tiny-ImageNet mirror not found; gallery left empty", extra={"path": str(root)})
        return 0
    records = tiny_imagenet_val(root) if args.tiny_imagenet_val else folder_images(args.folder)
    pool = build_pool("embedder", settings)
    if args.if_stale and len(index):
        current = f"embedder:{pool.default_version}"
        if index.embedder in (None, current):
            log.info("gallery already built by this embedder; nothing to do", extra={"gallery_size": len(index)})
            return 0
        log.warning(
            "the gallery was built by another embedder version: emptying it to build it again",
            extra={"gallery_size": len(index), "gallery_embedder": index.embedder, "embedder": current},
        )
        index.clear()
    engine = SearchEngine(ModelWorker(pool), index)
    added = build(records, engine, settings, args.limit, thumbnails=args.thumbnails)
    log.info("gallery built", extra={"added": added, "gallery_size": len(index)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
