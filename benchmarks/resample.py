"""The classifier's and embedder's resize: the compiled passes (services/models/resample.py) against Pillow's own.

For each photo, the serving path's crop (``preprocessing.resize_and_crop`` with the Lite0 input: the shorter side to
224, the centre 224 x 224, only the crop resampled, Pillow's bicubic) timed both ways: CPU ms per call on one thread,
and wall ms per call with two threads resizing at once (both release the GIL). With the data sets' mirror folder
(``--datasets``, default ``CV_DATASETS_MIRROR_DIR``) every JPEG of the Tiny-ImageNet val split and of COCO128,
decoded at full scale as the api decodes an upload, goes through the same crop both ways, and the images whose
224 x 224 x 3 bytes differ in any value are counted (the served top-1 cannot move if none does).
Writes benchmarks/reports/resample.md and .json.

    python benchmarks/resample.py [--calls N] [--datasets DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from benchmarks.decode import dataset_jpegs  # noqa: E402
from services.imaging import decode_image  # noqa: E402
from services.models import resample  # noqa: E402
from services.models.preprocessing import resize_and_crop  # noqa: E402
from services.models.spec import InputSpec  # noqa: E402
from services.models.specs.lite0 import lite0_input  # noqa: E402

# The "preprocessing" block of the Lite0 exports' export.json, as the model store's specs are built from it.
LITE0 = {"input_size": 224, "color_order": "RGB", "mean": [127.0] * 3, "std": [128.0] * 3}
SPEC = lite0_input({"preprocessing": LITE0})


@contextmanager
def pillow_only() -> Iterator[None]:
    """Every resize through Pillow, as with ``CV_NATIVE_RESAMPLE=false``."""
    enabled = resample.native_enabled()
    resample.configure(False)
    try:
        yield
    finally:
        resample.configure(enabled)


def pixels(data: bytes) -> np.ndarray:
    """A JPEG's pixels as the api decodes an upload, at full scale (every pixel reaches the resize)."""
    return decode_image(data, declared_type="image/jpeg", max_bytes=1 << 26, max_pixels=40_000_000).pixels


def timed_photos() -> dict[str, np.ndarray]:
    """The photos timed: the peers' classify photo, a Tiny-ImageNet-sized one, a COCO-sized one, the detect photo."""
    from benchmarks.peers import detect_photo

    shots = common.photos()
    astronaut = Image.open(io.BytesIO(shots["astronaut"])).convert("RGB")
    return {
        "chelsea 451x300 (classify in peers.md)": pixels(shots["chelsea"]),
        "64x64 (a Tiny-ImageNet image, upscaled)": np.asarray(astronaut.resize((64, 64), Image.Resampling.LANCZOS)),
        "640x427 (a COCO photo's size)": np.asarray(astronaut.resize((640, 427), Image.Resampling.LANCZOS)),
        "810x1080 (detect in peers.md)": pixels(detect_photo(None)),
    }


def crop(image: np.ndarray, spec: InputSpec = SPEC) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        return resize_and_crop(image, spec)[0]

    return call


def same_bytes(datasets: Path) -> dict[str, dict[str, int]]:
    """Per archive: JPEGs cropped both ways, and how many crops differ in any byte."""
    out = {}
    for archive, jpegs in dataset_jpegs(datasets):
        counts = {"images": 0, "differ": 0}
        for data in jpegs:
            image = pixels(data)
            fast = crop(image)()
            with pillow_only():
                slow = crop(image)()
            counts["images"] += 1
            counts["differ"] += not np.array_equal(fast, slow)
        out[archive] = counts
    return out


def run(calls: int, datasets: Path | None) -> dict[str, Any]:
    if not resample.native_enabled():
        raise SystemExit("the compiled passes are not built here (pip install -e .) or CV_NATIVE_RESAMPLE=false")
    rows = {}
    for label, image in timed_photos().items():
        fast = common.one_and_two_threads(crop(image), calls)
        with pillow_only():
            slow = common.one_and_two_threads(crop(image), calls)
        rows[label] = {"size": list(image.shape[:2]), "calls": calls, "pillow": slow, "native": fast}
    return {
        "machine": common.machine_facts(),
        "photos": rows,
        "same_bytes": same_bytes(datasets) if datasets is not None and datasets.is_dir() else {},
    }


def render(results: dict[str, Any], command: str) -> str:
    photo_rows = [[label, *common.cost_cells(row, "pillow", "native")] for label, row in results["photos"].items()]
    headers = ["photo", "Pillow CPU ms", "native CPU ms", "Pillow / native"]
    headers += ["Pillow 2 threads ms", "native 2 threads ms"]
    identity = results["same_bytes"]
    if identity:
        same = common.table(
            ["archive", "JPEGs", "crops that differ"], [[k, c["images"], c["differ"]] for k, c in identity.items()]
        )
    else:
        same = common.NO_DATASETS
    return (
        "# The classifier's resize: the compiled passes against Pillow\n\n"
        f"Made by `{command}`. `preprocessing.resize_and_crop` with the Lite0 input (the shorter side to 224, the "
        "centre 224 x 224, only the crop resampled with Pillow's bicubic) as shipped (services/models/resample.py: "
        "Pillow's coefficients, the two integer passes compiled from services/models/_resample.c with loops the "
        "compiler vectorises) and with `CV_NATIVE_RESAMPLE=false` (Pillow's `Image.resize`). CPU ms per call on one "
        "thread; wall ms per call with two threads at once.\n\n"
        + common.table(headers, photo_rows)
        + "\n\n## The same bytes\n\nEvery JPEG of the data sets, decoded at full scale as the api decodes an upload "
        "and cropped both ways:\n\n"
        + same
        + "\n\n## Machine\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in results["machine"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    default = os.environ.get("CV_DATASETS_MIRROR_DIR")
    parser.add_argument("--datasets", type=Path, default=Path(default) if default else None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "resample.md")
    args = parser.parse_args(argv)
    results = run(args.calls, args.datasets)
    common.write_report(args.out, render(results, "python benchmarks/resample.py"), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
