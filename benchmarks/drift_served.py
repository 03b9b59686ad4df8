"""Drift through a served api: windows of held-out Tiny-ImageNet images, unshifted and shifted, sent to
``POST /api/v1/classify``, each followed by ``GET /api/v1/drift/classifier?window=N``.

    make serve                                     # in another terminal (CV_CACHE_ENABLED=false: every image runs)
    python benchmarks/drift_served.py --url http://127.0.0.1:3000 --window 300 \\
        --sequence none,darkened,none,blurred,grey

The images are the held-out half of Tiny-ImageNet val (odd image numbers; the committed reference was built from
even ones), a fresh seeded slice for each window, so no image is sent twice. Writes
benchmarks/reports/drift_served.md. Offline, over many more windows: benchmarks/drift.py.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/drift_served.py` from the root

from benchmarks.drift_data import SHIFTS
from services.config import get_settings
from services.drift.build import tiny_imagenet_split

REPORT = Path(__file__).resolve().parent / "reports" / "drift_served.md"


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _window(client: httpx.Client, images: list[bytes], shift: str, threads: int) -> tuple[int, dict]:
    shifted = [_jpeg(SHIFTS[shift](np.asarray(Image.open(io.BytesIO(d)).convert("RGB")))) for d in images]

    def send(data: bytes) -> int:
        return client.post("/api/v1/classify", files={"image": ("x.jpg", data, "image/jpeg")}).status_code

    with ThreadPoolExecutor(threads) as pool:
        answered = sum(code == 200 for code in pool.map(send, shifted))
    report: dict = client.get("/api/v1/drift/classifier", params={"window": len(images)}).json()
    return answered, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--window", type=int, default=300)
    parser.add_argument("--sequence", default="none,darkened,none,blurred,grey", help=f"of {', '.join(SHIFTS)}")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    held_out = [data for data, _ in tiny_imagenet_split(get_settings(), held_out=True)]
    random.Random(args.seed).shuffle(held_out)
    rows = []
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for i, shift in enumerate(args.sequence.split(",")):
            images = held_out[i * args.window : (i + 1) * args.window]
            started = time.perf_counter()
            answered, report = _window(client, images, shift, args.threads)
            fired = [f"{t['name']}:{t['feature']}" for t in report["tests"] if t["drift"]]
            rows.append((shift, len(images), answered, report["n"], report["verdict"], ", ".join(fired) or "none"))
            print(*rows[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines = [
        "# Drift through the served api",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC - `python benchmarks/drift_served.py --url {args.url} "
        f"--window {args.window} --sequence {args.sequence}` against `bentoml serve services.api:Api` "
        "(cache off). Each window: fresh held-out Tiny-ImageNet val images (odd numbers), shifted, sent to "
        "`/api/v1/classify`, then `GET /api/v1/drift/classifier?window=N`.",
        "",
        "| window | images | answered 200 | rows compared | verdict | tests that fired |",
        "|---|---|---|---|---|---|",
        *(f"| {s} | {n} | {a} | {c} | **{v}** | {f} |" for s, n, a, c, v, f in rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
