"""The servers benchmarks/peers.py measures, and how each starts: the product as `make serve` runs it, and the
hand-written peers of benchmarks/peers/ under uvicorn.

benchmarks/peers_profile.py and benchmarks/sched_trace.py start the same servers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.loopback import REPO, Target
from benchmarks.peers_report import BASELINE, NO_BATCHING, PRODUCT

PEERS = REPO / "benchmarks" / "peers"  # the peers' files, each run as `uvicorn <file>:app`
UVICORN_ARGS = ("--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def product(
    name: str,
    workdir: Path,
    batching: bool,
    concurrencies: tuple[int, ...],
    sequential: bool,
    extra: dict[str, str] | None = None,
) -> Target:
    """The api as `make serve` starts it, but for the result cache (off, so no request is a cache hit).

    ``extra`` (a variant's settings, e.g. ``CV_ORT_ALLOW_SPINNING=true``) is added to its environment.
    """
    from deploy.runner import own_bentoml_home

    home = own_bentoml_home(Path(os.environ["BENTOML_HOME"]), workdir / f"bentoml-{name}")
    in_process = (extra or {}).get("CV_MODELS_IN_PROCESS", "true").lower() == "true"  # `make serve`'s default
    placement = "models in the api process" if in_process else "model services"
    setting = f"{placement}, batching {'on' if batching else 'off'}"
    shown = {k: v for k, v in (extra or {}).items() if k != "CV_MODELS_IN_PROCESS"}
    return Target(
        name=name,
        label=f"this product, /api/v1 ({', '.join([setting, *(f'{k}={v}' for k, v in shown.items())])})",
        command=[_bin("bentoml"), "serve", "services.api:Api", "--host", "127.0.0.1", "--port", "{port}"],
        routes={"classify": "/api/v1/classify", "detect": "/api/v1/detect"},
        health="/api/v1/health",
        env={
            "BENTOML_HOME": str(home),
            "CV_DATA_DIR": str(workdir / f"data-{name}"),
            "CV_CACHE_ENABLED": "false",
            "CV_BATCHING_ENABLED": str(batching).lower(),
            **(extra or {}),
        },
        concurrencies=concurrencies,
        skip_sequential=not sequential,
    )


def peer(name: str, label: str, module: str, route: str, env: dict[str, str], load: tuple[int, ...]) -> Target:
    """A peer of benchmarks/peers/ under uvicorn (one process, as its README would say)."""
    return Target(
        name=name,
        label=label,
        command=[_bin("python"), "-m", "uvicorn", "--app-dir", str(PEERS), f"{module}:app", *UVICORN_ARGS],
        routes={route: f"/{route}"},
        health="/health",
        env={"PEER_THREADS": "2", **env},
        concurrencies=load,
    )


def served_files(name: str) -> tuple[dict[str, Path], str]:
    """The production entry of ``name`` in the model store: its files by precision and the precision served."""
    from services.config import ServingSettings
    from services.models.store import list_versions

    entries = list_versions(name)
    entry = next((e for e in entries if e.spec.stage.value == "production"), entries[-1])
    served = "int8" if ServingSettings().prefer_int8 and "int8" in entry.paths else "fp32"
    return entry.paths, served


def targets(plan: argparse.Namespace, workdir: Path) -> list[Target]:
    """The product (batching on, then off) and the peers, in the order they run."""
    load, batching_load = tuple(plan.concurrencies), tuple(sorted({*plan.concurrencies, *plan.batching_concurrencies}))
    classifier, _ = served_files("classifier")
    detector, detector_precision = served_files("detector")
    labels = str(REPO / "artifacts" / "lite0_tiny_imagenet200" / "labels.json")
    every = [
        product("product", workdir, True, batching_load, True),
        peer(
            "ort-int8",
            "FastAPI + ONNX Runtime, INT8 file",
            "ort_classifier",
            "classify",
            {"PEER_MODEL": str(classifier["int8"]), "PEER_LABELS": labels},
            load,
        ),
        peer(
            "ort-fp32",
            "FastAPI + ONNX Runtime, FP32 file",
            "ort_classifier",
            "classify",
            {"PEER_MODEL": str(classifier["fp32"]), "PEER_LABELS": labels},
            load,
        ),
        peer(
            "ort-detector",
            f"FastAPI + ONNX Runtime YOLOX-Nano ({detector_precision} file)",
            "ort_detector",
            "detect",
            {"PEER_MODEL": str(detector[detector_precision])},
            load,
        ),
        peer("torch-eager", "FastAPI + PyTorch eager (ImageNet Lite0)", "torch_classifier", "classify", {}, load),
        *(product(f"product-{name}", workdir, True, load, True, env) for name, env in plan.variant),
        product("product-no-batching", workdir, False, batching_load, False),
    ]
    return [t for t in every if t.name in plan.only] if plan.only else every


def goal_servers(plan: argparse.Namespace, workdir: Path) -> list[Target]:
    """The servers the goals compare: the product with adaptive batching on and off (at round 1's concurrencies) and
    each route's FastAPI + ONNX Runtime peer (those of ``--only``)."""
    names = {PRODUCT, NO_BATCHING, *BASELINE.values()}
    return [t for t in targets(plan, workdir) if t.name in names]


def start_timeout(target: Target) -> float:
    """How long ``target`` may take to answer its health route: the product loads its models first."""
    return 300.0 if "bentoml" in target.command[0] else 120.0
