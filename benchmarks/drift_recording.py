"""What the drift features cost each logged request: the inference log's records with and without them, one run.

For one answered image (scikit-image's chelsea, 451x300, and astronaut, 512x512), interleaved in rounds so the
shared CPUs' noise hits both sides alike:

- ``request_features`` alone (services/drift/features.py: image statistics, top label, sketch);
- ``ItemLedger.records`` (services/http/recording.py) with the features, and with them switched off: the
  difference is what each answered image adds to the api process, after its response has gone.

Writes benchmarks/reports/drift_recording.md and .json. ``python benchmarks/drift_recording.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import photos, table  # noqa: E402
from services.drift.features import SKETCH_DIM, request_features  # noqa: E402
from services.http import recording  # noqa: E402
from services.http.context import RequestContext  # noqa: E402
from services.http.recording import ItemLedger  # noqa: E402
from services.imaging import DecodedImage  # noqa: E402
from services.models.contract import Prediction  # noqa: E402

REPORTS = REPO / "benchmarks" / "reports"


def _prediction() -> Prediction:
    result = {"predictions": [{"class_id": i, "label": f"class-{i}", "score": 0.9 / (i + 1)} for i in range(5)]}
    return Prediction(
        model="classifier", version="v2", precision="int8", result=result, timings_ms={}, sketch=[0.1] * SKETCH_DIM
    )


def _records(image: DecodedImage, prediction: Prediction) -> None:
    ledger = ItemLedger()
    ledger.image_read(image)
    ledger.answered(image.pixels, prediction, {"top_label": "class-0", "top_score": 0.9}, cached=False)
    ledger.records(RequestContext(request_id="r"), route="/api/v1/classify", status=200, error_type=None, latency_ms=1)


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) * 1e6 / calls


def measure(rounds: int = 20, calls: int = 200) -> dict[str, Any]:
    """Median microseconds per image of each variant over ``rounds`` interleaved rounds of ``calls`` calls."""
    prediction = _prediction()
    results: dict[str, Any] = {}
    for name, data in photos().items():
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        image = DecodedImage(pixels=pixels, format="JPEG", sha256="0" * 64, byte_size=len(data))
        samples: dict[str, list[float]] = {"features": [], "records_with": [], "records_without": []}
        original = recording.drift_features
        for _ in range(rounds):
            samples["features"].append(_per_call_us(lambda: request_features(pixels, prediction), calls))  # noqa: B023
            samples["records_with"].append(_per_call_us(lambda: _records(image, prediction), calls))  # noqa: B023
            recording.drift_features = lambda pixels, prediction, size=None: None
            try:
                samples["records_without"].append(_per_call_us(lambda: _records(image, prediction), calls))  # noqa: B023
            finally:
                recording.drift_features = original
        medians = {key: statistics.median(values) for key, values in samples.items()}
        medians["added"] = medians["records_with"] - medians["records_without"]
        results[name] = {"size": f"{pixels.shape[1]}x{pixels.shape[0]}", **medians}
    return {"rounds": rounds, "calls": calls, "images": results}


def report(result: dict[str, Any]) -> str:
    """The markdown report of :func:`measure`'s result."""
    rows = [
        [name, r["size"], r["features"], r["records_without"], r["records_with"], r["added"]]
        for name, r in result["images"].items()
    ]
    headers = ["image", "size", "request_features µs", "records without µs", "records with µs", "added µs"]
    return "\n".join(
        [
            "# Drift features on the inference log's path",
            "",
            f"`python benchmarks/drift_recording.py` ({result['rounds']} interleaved rounds of {result['calls']} calls;"
            " medians, microseconds per answered image). `records` is `ItemLedger.records` for one classify answer,"
            " which the api runs once the response has gone (services/http/recording.py); `added` is what the drift"
            " features add to it. Numbers are noisy on shared CPUs: compare within this table only.",
            "",
            table(headers, rows),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.calls)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_recording.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "drift_recording.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
