"""One side of the regression check, in its own process: bare model latency per model and precision, as JSON.

Run by benchmarks/regression.py as ``python -P -m benchmarks.regression_side --root SIDE --serve`` with
``PYTHONPATH`` at this harness's checkout: this module and benchmarks.common come from the harness, and
everything under test (services, kernel, training) is imported from ``--root`` (the working tree or the
baseline's temporary worktree), which :func:`pin_root` puts first on ``sys.path`` before any of it is imported.
The model files are those of ``BENTOML_HOME`` (the side's own store, filled by the side's import scripts).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from benchmarks.common import photos, timed

# The photo each model is timed on (benchmarks/serving.py's choice): chelsea is a cat, astronaut has a person.
PHOTO_OF = {"classifier": "chelsea", "detector": "astronaut", "embedder": "chelsea"}
PINNED = ("services", "kernel", "training")


def pin_root(root: Path) -> None:
    """Make ``root`` the source of the code under test; refuses when some of it was imported from elsewhere."""
    sys.path.insert(0, str(root))
    for name in PINNED:
        module = __import__(name)
        where = Path(module.__file__ or "").resolve()
        if not where.is_relative_to(root.resolve()):
            raise RuntimeError(f"{name} was imported from {where}, not from {root}")


def runners(models: list[str]) -> dict[str, Callable[[], object]]:
    """``model/precision`` -> one batch-1 call of that file of the model's newest store entry, through the
    serving runner (same session options as the services), on the model's photo."""
    from services.config import ServingSettings
    from services.models.preprocessing import prepare
    from services.models.runtime import OrtRunner
    from services.models.store import list_versions

    jpegs, settings = photos(), ServingSettings()
    calls: dict[str, Callable[[], object]] = {}
    for model in models:
        entry = list_versions(model)[-1]
        image = np.asarray(Image.open(io.BytesIO(jpegs[PHOTO_OF[model]])).convert("RGB"))
        tensor = prepare(image, entry.spec.input).tensor[None]
        for precision, path in sorted(entry.paths.items()):
            runner = OrtRunner(
                path,
                input_name=entry.spec.input.name,
                output_name=entry.spec.output_name,
                providers=settings.ort_providers,
                threads=settings.ort_intra_op_threads,
            )
            calls[f"{model}/{precision}"] = partial(runner, tensor)
    return calls


def samples(call: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` calls."""
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def serve(calls: dict[str, Callable[[], object]], requests: Iterable[str], reply: TextIO) -> None:
    """Answer ``{"key": "model/precision", "calls": n}`` lines with ``{"samples": [ms, ...]}`` lines until EOF.

    The driver keeps both sides' processes up and alternates short blocks between them, so that a burst of load
    from elsewhere on the machine lands on both sides alike.
    """
    print(json.dumps({"ready": sorted(calls)}), file=reply, flush=True)
    for line in requests:
        request = json.loads(line)
        print(json.dumps({"samples": samples(calls[request["key"]], int(request["calls"]))}), file=reply, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout whose code is measured")
    parser.add_argument("--models", nargs="+", default=list(PHOTO_OF), choices=list(PHOTO_OF))
    parser.add_argument("--calls", type=int, default=50, help="timed calls per model and precision (one-shot)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (one-shot)")
    parser.add_argument("--serve", action="store_true", help="answer requests on stdin (benchmarks/regression.py)")
    args = parser.parse_args(argv)
    pin_root(args.root)
    calls = runners(args.models)
    if args.serve:
        serve(calls, sys.stdin, sys.stdout)
        return 0
    print(json.dumps({key: timed(call, args.calls, args.warmup) for key, call in calls.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
