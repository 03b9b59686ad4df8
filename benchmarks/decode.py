"""JPEG decoding of an upload: libjpeg-turbo into NumPy (simplejpeg, the product's path) against Pillow's decode.

For each photo, ``services.imaging.decode_image`` as shipped and with its fast path switched off (Pillow decodes,
as before): the CPU per decode on one thread and the wall time per decode with two threads decoding at once (both
paths decode with the GIL released; Pillow's then copies its buffer into NumPy). With the data sets' mirror folder
(``--datasets``, default ``CV_DATASETS_MIRROR_DIR``) it also decodes every JPEG of the Tiny-ImageNet val split and of
COCO128, straight from their archives, both ways, and counts the images whose pixels differ (the top-1 and the mAP
cannot move if none does). Writes benchmarks/reports/decode.md/.json.

    python benchmarks/decode.py [--calls N] [--datasets DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    NO_DATASETS,
    cost_cells,
    machine_facts,
    one_and_two_threads,
    photos,
    table,
    write_report,
)
from services import imaging  # noqa: E402
from services.imaging import DecodeFloor, decode_image  # noqa: E402

CLASSIFIER_FLOOR = DecodeFloor("shorter", 224)  # what a phone photo decodes at for the classifier (1/8 here)
# The data sets' archives holding JPEGs, under the mirror folder: (folder, archive).
ARCHIVES = (("tiny-imagenet-200", "val.tar.gz"), ("coco128", "coco128.tar.gz"))


def timed_photos() -> dict[str, tuple[bytes, DecodeFloor | None]]:
    """The photos timed: the peers' two (benchmarks/peers.py), a Tiny-ImageNet-sized one, a phone photo."""
    from benchmarks.peers import detect_photo

    shots = photos()
    chelsea = shots["chelsea"]
    small, phone = io.BytesIO(), io.BytesIO()
    astronaut = Image.open(io.BytesIO(shots["astronaut"]))
    astronaut.resize((64, 64), Image.Resampling.LANCZOS).save(small, "JPEG", quality=90)
    astronaut.resize((4032, 3024), Image.Resampling.LANCZOS).save(phone, "JPEG", quality=90)
    return {
        "chelsea 451x300 (classify in peers.md)": (chelsea, None),
        "810x1080 (detect in peers.md)": (detect_photo(None), None),
        "64x64 (a Tiny-ImageNet image's size)": (small.getvalue(), None),
        "4032x3024 phone photo, classifier floor (1/8 scale)": (phone.getvalue(), CLASSIFIER_FLOOR),
    }


@contextmanager
def pillow_only() -> Iterator[None]:
    """Every decode through Pillow, as before the fast path (services/imaging.py finds no simplejpeg)."""
    found = imaging._simplejpeg
    imaging._simplejpeg = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        imaging._simplejpeg = found


@contextmanager
def fast_path_taken() -> Iterator[list[bool]]:
    """Whether the decodes inside took the fast path: ``[True]`` once libjpeg-turbo decoded, seen from the one call
    that tries it (so the image is decoded once, not once more to ask)."""
    attempt = imaging._decode_jpeg
    taken = [False]

    def spy(*args: Any, **kwargs: Any) -> tuple[np.ndarray, bool] | None:
        result = attempt(*args, **kwargs)
        taken[0] = taken[0] or result is not None
        return result

    imaging._decode_jpeg = spy
    try:
        yield taken
    finally:
        imaging._decode_jpeg = attempt


def decoder(data: bytes, floor: DecodeFloor | None) -> Callable[[], np.ndarray]:
    def decode() -> np.ndarray:
        return decode_image(
            data, declared_type="image/jpeg", max_bytes=1 << 26, max_pixels=40_000_000, floor=floor
        ).pixels

    return decode


def archive_jpegs(path: Path) -> Iterator[bytes]:
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg")):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    yield extracted.read()


def dataset_jpegs(datasets: Path) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Each of ARCHIVES found under the mirror folder ``datasets``: its name ("folder/archive") and its JPEGs."""
    for folder, name in ARCHIVES:
        path = datasets / folder / name
        if path.is_file():
            yield f"{folder}/{name}", archive_jpegs(path)


def same_pixels(datasets: Path) -> dict[str, dict[str, int]]:
    """Per archive: JPEGs decoded both ways, how many took the fast path, how many differ in any pixel."""
    out = {}
    for archive, jpegs in dataset_jpegs(datasets):
        counts = {"images": 0, "fast_path": 0, "differ": 0}
        for data in jpegs:
            counts["images"] += 1
            with fast_path_taken() as taken:
                fast = decoder(data, None)()
            counts["fast_path"] += taken[0]
            with pillow_only():
                slow = decoder(data, None)()
            counts["differ"] += not np.array_equal(fast, slow)
        out[archive] = counts
    return out


def run(calls: int, datasets: Path | None) -> dict[str, Any]:
    rows = {}
    for label, (data, floor) in timed_photos().items():
        n = max(4, calls // 20) if floor is not None or len(data) > 100_000 else calls
        fast = one_and_two_threads(decoder(data, floor), n)
        with pillow_only():
            slow = one_and_two_threads(decoder(data, floor), n)
        rows[label] = {"bytes": len(data), "calls": n, "pillow": slow, "fast": fast}
    return {
        "machine": machine_facts(),
        "photos": rows,
        "same_pixels": same_pixels(datasets) if datasets is not None and datasets.is_dir() else {},
    }


def render(results: dict[str, Any], command: str) -> str:
    photo_rows = [[label, row["bytes"], *cost_cells(row, "pillow", "fast")] for label, row in results["photos"].items()]
    headers = [
        "photo",
        "bytes",
        "Pillow CPU ms",
        "fast CPU ms",
        "Pillow / fast",
        "Pillow 2 threads ms",
        "fast 2 threads ms",
    ]
    identity = results["same_pixels"]
    if identity:
        same = table(
            ["archive", "JPEGs", "took the fast path", "pixels differ"],
            [[name, c["images"], c["fast_path"], c["differ"]] for name, c in identity.items()],
        )
    else:
        same = NO_DATASETS
    machine = "\n".join(f"- {k}: {v}" for k, v in results["machine"].items())
    return (
        "# JPEG decoding: libjpeg-turbo into NumPy against Pillow\n\n"
        f"Made by `{command}`. `services.imaging.decode_image` as shipped (a complete RGB or grey JPEG is decoded by "
        "simplejpeg) and with that path off (Pillow decodes every upload, as before). CPU ms: one thread, "
        "`time.process_time` per decode (validation and SHA-256 included); 2 threads: wall ms per decode with two "
        "threads decoding at once. Same machine, same run: compare the ratios.\n\n"
        f"## Machine\n\n{machine}\n\n## Cost per decode\n\n{table(headers, photo_rows)}\n\n"
        f"## The same pixels\n\nEvery JPEG of each archive decoded both ways (full size).\n\n{same}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="decodes per photo and path (large photos: 1/20)")
    mirror = os.environ.get("CV_DATASETS_MIRROR_DIR")
    parser.add_argument("--datasets", type=Path, default=Path(mirror) if mirror else None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "decode.md")
    args = parser.parse_args(argv)
    results = run(args.calls, args.datasets)
    command = "python benchmarks/decode.py" + (f" --calls {args.calls}" if args.calls != 400 else "")
    write_report(args.out, render(results, command), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
