"""One side of the regression check, in its own process: bare model latency per model and precision, as JSON.

Run by benchmarks/regression.py as ``python -P -m benchmarks.regression_side --root SIDE ...`` with
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
from functools import partial
from pathlib import Path
from typing import Any

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


def bare(model: str, image: np.ndarray, calls: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Each precision's file of the model's newest store entry, called through the serving runner at batch 1."""
    from services.config import ServingSettings
    from services.models.preprocessing import prepare
    from services.models.runtime import OrtRunner
    from services.models.store import list_versions

    settings, entry = ServingSettings(), list_versions(model)[-1]
    tensor = prepare(image, entry.spec.input).tensor[None]
    out: dict[str, dict[str, Any]] = {}
    for precision, path in sorted(entry.paths.items()):
        runner = OrtRunner(
            path,
            input_name=entry.spec.input.name,
            output_name=entry.spec.output_name,
            providers=settings.ort_providers,
            threads=settings.ort_intra_op_threads,
        )
        out[precision] = {**timed(partial(runner, tensor), calls, warmup), "version": entry.spec.version}
    return out


def measure(models: list[str], calls: int, warmup: int) -> dict[str, Any]:
    jpegs = photos()
    images = {k: np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for k, v in jpegs.items()}
    return {model: bare(model, images[PHOTO_OF[model]], calls, warmup) for model in models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout whose code is measured")
    parser.add_argument("--models", nargs="+", default=list(PHOTO_OF), choices=list(PHOTO_OF))
    parser.add_argument("--calls", type=int, default=50, help="timed calls per model and precision")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    pin_root(args.root)
    print(json.dumps({"bare": measure(args.models, args.calls, args.warmup)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
