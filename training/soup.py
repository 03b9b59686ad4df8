"""Average released Tiny-ImageNet fine-tunes into one network of the same size (a weight-space "model soup").

Usage::

    python -m training.soup --release v2 --release v3 [--weights 0.5 0.5] --out runs/lite0_soup_v2_v3
    python -m training.release --run runs/lite0_soup_v2_v3 --out artifacts/... --version v4

Every Tiny-ImageNet release starts from the same ImageNet weights and the same head initialisation (the ImageNet
rows of the same wnids, ``training.modules.lite0_net.build_classifier``), so the fine-tunes stay in one basin and
the weighted average of their weights is a classifier too, often better than each of them, at no serving cost
(Wortsman et al., 2022, "Model soups"). Releases that froze more layers simply contribute the ImageNet weights there.

The runs' ``model.pt`` are not kept, so the ingredients are read from each release's FP32 ONNX file, whose exporter
folded every BatchNorm into the conv before it (``<conv>.weight``, ``<conv>.weight_bias``). Each file loads back
into timm's module exactly: the folded kernel into the conv, the folded bias into the BatchNorm's shift, and the
BatchNorm made the identity (scale 1, mean 0, variance 1 - eps). Averaging the folded layers averages the affine
map that each conv + BatchNorm computes. The output is a run folder as ``python -m training.train`` writes it
(``model.pt``, ``labels.json``, ``config.yaml``, ``summary.json``), so ``python -m training.release`` exports,
checks, quantizes and measures it like any other run.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
import yaml
from onnx import numpy_helper

from services.models.importer import verify_checksum
from services.models.specs.lite0 import finetuned_dir, lite0_input
from training import lite0
from training.export import write_labels
from training.modules.lite0_net import build_classifier
from training.settings import get_training_settings

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

log = logging.getLogger("training.soup")

# The exporter's names: the wrapper (training.export.Lite0WithEmbeddings) holds the timm network as `model`.
PREFIX = "model."
FOLDED_BIAS = "_bias"


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The float initializers of an exported Lite0 file, by the exporter's names (``model.blocks.4.0.conv_pw...``)."""
    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    return {name: array for name, array in weights.items() if name.startswith(PREFIX) and array.dtype.kind == "f"}


def state_dict_from_onnx(model: EfficientNet, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``model``'s state dict holding ``weights``: each folded conv + BatchNorm as the conv and an identity BatchNorm.

    Raises:
        ValueError: a weight has no place in ``model``, a shape differs, or a parameter of ``model`` is not in
            ``weights`` (the file is not an export of this architecture).
    """
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    modules = dict(model.named_modules())
    used: set[str] = set()
    for onnx_name, array in weights.items():
        name = onnx_name.removeprefix(PREFIX)
        if name.endswith(".weight" + FOLDED_BIAS):
            conv = name.removesuffix(".weight" + FOLDED_BIAS)
            bn = _bn_after(conv, modules)
            eps = float(modules[bn].eps)
            fills = {"weight": 1.0, "running_mean": 0.0, "running_var": 1.0 - eps}
            for suffix, value in fills.items():
                state[f"{bn}.{suffix}"] = torch.full_like(state[f"{bn}.{suffix}"], value)
            _put(state, f"{bn}.bias", array)
            used.update(f"{bn}.{suffix}" for suffix in ("weight", "bias", "running_mean", "running_var"))
        else:
            _put(state, name, array)
            used.add(name)
    missing = sorted(n for n, _ in model.named_parameters() if n not in used)
    if missing:
        raise ValueError(f"the ONNX file lacks {len(missing)} parameters of the network, e.g. {missing[:3]}")
    return state


def _bn_after(conv: str, modules: dict[str, torch.nn.Module]) -> str:
    """The BatchNorm that follows ``conv`` in timm's EfficientNet blocks.

    Stem and head: ``conv_stem`` -> ``bn1``, ``conv_head`` -> ``bn2``. Inverted residual (has ``bn3``): ``conv_pw``,
    ``conv_dw``, ``conv_pwl`` -> ``bn1``, ``bn2``, ``bn3``. Depthwise-separable: ``conv_dw``, ``conv_pw`` -> ``bn1``,
    ``bn2``.
    """
    parent, _, leaf = conv.rpartition(".")
    if not parent:
        order = {"conv_stem": "bn1", "conv_head": "bn2"}
    elif f"{parent}.bn3" in modules:
        order = {"conv_pw": "bn1", "conv_dw": "bn2", "conv_pwl": "bn3"}
    else:
        order = {"conv_dw": "bn1", "conv_pw": "bn2"}
    bn = f"{parent}.{order.get(leaf, '?')}" if parent else order.get(leaf, "?")
    if bn not in modules or not isinstance(modules[bn], torch.nn.BatchNorm2d):
        raise ValueError(f"no BatchNorm after {conv} (looked for {bn})")
    return bn


def _put(state: dict[str, torch.Tensor], name: str, array: np.ndarray) -> None:
    if name not in state:
        raise ValueError(f"{name} is not a tensor of the network")
    if tuple(state[name].shape) != array.shape:
        raise ValueError(f"{name}: the file's shape {array.shape} is not the network's {tuple(state[name].shape)}")
    state[name] = torch.from_numpy(np.array(array, copy=True)).to(state[name].dtype)


def average(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The weighted average of state dicts, in float64 (integer buffers, e.g. BatchNorm's counter, from the first)."""
    if len(states) != len(weights) or not states:
        raise ValueError(f"{len(states)} state dicts for {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0 and not all 0: {list(weights)}")
    out: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            out[name] = first.clone()
            continue
        mixed = sum(w / total * s[name].double() for s, w in zip(states, weights, strict=True))
        out[name] = torch.as_tensor(mixed).to(first.dtype)
    return out


def load_release(artifacts_dir: Path, version: str) -> tuple[Path, str, list[dict[str, Any]]]:
    """A release's FP32 file, its SHA-256 (checked against the release's ``metrics.json``) and its labels."""
    folder = artifacts_dir / finetuned_dir(version)
    entry = json.loads((folder / "metrics.json").read_text())["files"]["fp32"]
    path = folder / entry["name"]
    verify_checksum(path, entry["sha256"])
    return path, entry["sha256"], json.loads((folder / "labels.json").read_text())


def served_size(artifacts_dir: Path, version: str) -> int:
    """The input side a release serves at, as serving reads it from its ``export.json`` (none: the export's 224)."""
    export = artifacts_dir / finetuned_dir(version) / "export.json"
    if not export.is_file():
        return lite0.INPUT_SIZE
    return lite0_input(json.loads(export.read_text())).height


def make_soup(releases: Sequence[str], weights: Sequence[float], out: Path, artifacts_dir: Path) -> dict[str, Any]:
    """Write the soup of ``releases`` as a run folder under ``out``; returns its ``summary.json``."""
    if len(set(releases)) != len(releases) or len(releases) < 2:
        raise ValueError(f"a soup needs two or more different releases, got {list(releases)}")
    loaded = [load_release(artifacts_dir, version) for version in releases]
    sizes = {version: served_size(artifacts_dir, version) for version in releases}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the releases serve at different input sizes, so their average has no one size: {sizes}")
    labels = loaded[0][2]
    for version, (_, _, other) in zip(releases, loaded, strict=True):
        if [e["wnid"] for e in other] != [e["wnid"] for e in labels]:
            raise ValueError(f"release {version} orders its classes differently from {releases[0]}")
    model = build_classifier(len(labels))
    states = [state_dict_from_onnx(model, onnx_weights(path)) for path, _, _ in loaded]
    model.load_state_dict(average(states, weights))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    write_labels(out / "labels.json", labels)
    total = float(sum(weights))
    config: dict[str, Any] = {
        "soup": {
            "releases": list(releases),
            "weights": [round(w / total, 6) for w in weights],
            "files": {
                version: {"path": f"{finetuned_dir(version)}/{path.name}", "sha256": sha256}
                for version, (path, sha256, _) in zip(releases, loaded, strict=True)
            },
        },
        # training.release exports at this size: the size the ingredients trained and serve at.
        "data": {"image_size": sizes[releases[0]]},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = {
        "name": out.name,
        "kind": "soup",
        "made": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m training.soup "
        + " ".join(f"--release {v}" for v in releases)
        + ("" if len(set(weights)) == 1 else " --weights " + " ".join(f"{w:g}" for w in weights))
        + f" --out runs/{out.name}",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("soup written to %s: %s", out, json.dumps(config["soup"]["weights"]))
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--release", action="append", required=True, help="a released version (repeat: v2, v3)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one per release (default: equal)")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write (runs/<name>)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    weights = args.weights or [1.0] * len(args.release)
    make_soup(args.release, weights, args.out, get_training_settings().artifacts_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
