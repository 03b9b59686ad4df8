"""INT8 static quantization (QDQ) of an ONNX file, calibrated on real preprocessed images.

Usage::

    python -m training.quantize detector --onnx yolox_nano.dynamic.onnx --out yolox_nano.int8.onnx \\
        [--method minmax|entropy|percentile] [--per-channel] [--count 128] [--seed 0] \\
        [--exclude-upto Mul_69] [--exclude-head] [--exclude-after PREFIX ...] [--exclude NODE ...]
    python -m training.quantize embedder --onnx artifacts/efficientnet_lite0_imagenet1k/model.onnx \\
        --out model.int8.onnx --method entropy --per-channel --count 256

Steps: ``quant_pre_process`` (shape inference and graph optimisation), then ``quantize_static``
with ``QuantFormat.QDQ``, QUInt8 activations and QInt8 weights. Calibration images go through
the serving preprocessing of the model's spec: COCO128 train2017 for the detector,
Tiny-ImageNet train for the Lite0 models. The sample is drawn with a seeded generator from the
sorted file list, so a given (count, seed) always calibrates on the same images.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from services.models.catalogue import entry
from services.models.preprocessing import prepare
from services.models.spec import InputSpec
from services.models.store import sha256_file
from training.serving import KINDS, Kind, read_rgb, serving_spec
from training.settings import TrainingSettings, get_training_settings

log = logging.getLogger("training.quantize")

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# The YOLOX-Nano head's final 1x1 convolutions; they and everything after them (sigmoids,
# concatenations, reshapes, transpose) are the detector's output region.
YOLOX_HEAD = ("head.cls_preds.", "head.reg_preds.", "head.obj_preds.")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Per-channel DequantizeLinear (its ``axis``) is opset 13; older graphs (YOLOX: 11) are upgraded.
QDQ_MIN_OPSET = 13


@dataclass(frozen=True)
class QuantizeConfig:
    """Everything that decides the INT8 file besides the source model and the image pool.

    Attributes:
        method: Calibration method: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: One weight scale per output channel instead of per tensor.
        count: Calibration images drawn from the pool.
        seed: Seed of the draw.
        nodes_to_exclude: Node names kept in float.
        exclude_after: Initializer name prefixes: the nodes reading them, and every node
            downstream of those, are kept in float (names survive ``quant_pre_process``; node
            names may not, so this is resolved on the pre-processed graph).
        exclude_upto: A node name: it and every node it depends on are kept in float (the
            stem of a network, where a narrow, high-resolution layer's error reaches everything).
        op_types: Op types to quantize; empty means every type ONNX Runtime can quantize.
        percentile: The percentile of the ``percentile`` method.
        histogram_chunk: The histogram methods add every tensor as a graph output and keep
            all of a collection pass in memory (~127 MB per YOLOX image); they are fed in
            passes of at most this many images. MinMax keeps only per-tensor min and max.
        extra: More ``quantize_static`` extra options.
    """

    method: str = "minmax"
    per_channel: bool = False
    count: int = 128
    seed: int = 0
    nodes_to_exclude: tuple[str, ...] = ()
    exclude_after: tuple[str, ...] = ()
    exclude_upto: str = ""
    op_types: tuple[str, ...] = ()
    percentile: float = 99.999
    histogram_chunk: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose from {sorted(METHODS)}")
        if self.count < 1:
            raise ValueError("calibration count must be >= 1")

    def settings(self) -> dict[str, Any]:
        """The config as JSON-ready settings (what a report records and a cache key hashes)."""
        data = asdict(self)
        data["nodes_to_exclude"] = list(self.nodes_to_exclude)
        data["exclude_after"] = list(self.exclude_after)
        data["op_types"] = list(self.op_types)
        data.update(
            quant_format="QDQ", activation_type="QUInt8", weight_type="QInt8", onnxruntime=onnxruntime.__version__
        )
        return data


def choose_calibration_images(paths: Sequence[Path], count: int, seed: int) -> list[Path]:
    """``count`` paths drawn with ``seed`` from the sorted pool, returned in sorted order."""
    pool = sorted(Path(p) for p in paths)
    if not pool:
        raise ValueError("no calibration images")
    if count >= len(pool):
        return pool
    return sorted(random.Random(seed).sample(pool, count))


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds images one by one, preprocessed as serving does, as ``{input name: 1 x C x H x W}``."""

    def __init__(self, paths: Sequence[Path], spec: InputSpec) -> None:
        self.paths = list(paths)
        self.spec = spec
        self._next = 0
        self._end = len(self.paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        tensor = prepare(read_rgb(self.paths[self._next]), self.spec).tensor
        self._next += 1
        return {self.spec.name: tensor[None]}

    def rewind(self) -> None:
        self.set_range(0, len(self.paths))

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve images ``start_index`` .. ``end_index - 1`` next (ORT's strided calibration)."""
        self._next, self._end = start_index, min(end_index, len(self.paths))

    def __len__(self) -> int:
        return len(self.paths)


def _pre_process(src: Path, dst: Path) -> str:
    """``quant_pre_process`` with symbolic shape inference, or ONNX's alone where the symbolic pass fails.

    The symbolic pass matters for transformer graphs; it cannot read some opset-18 reductions
    (the Lite0 export) and CNNs need only ONNX's inference. Returns which inference ran.
    """
    try:
        # auto_merge: Resize scales make sympy write the batch as floor(1.0*batch), which then
        # conflicts with "batch" at the next Concat; merging the two names is what they mean.
        quant_pre_process(str(src), str(dst), auto_merge=True)
        return "symbolic"
    except Exception as exc:  # the symbolic pass raises bare Exception and TypeError
        log.warning("symbolic shape inference failed (%s); using ONNX shape inference only", exc)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return "onnx"


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` converted to ``opset`` when its default-domain opset is older."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    log.info("upgrading opset %d -> %d for QDQ", current, opset)
    return onnx.version_converter.convert_version(model, opset)


def _chunk(total: int, limit: int) -> int:
    """The largest pass size <= ``limit`` that divides ``total`` (ORT needs equal passes)."""
    return next(size for size in range(min(limit, total), 0, -1) if total % size == 0)


def nodes_after(model: onnx.ModelProto, prefixes: Sequence[str]) -> list[str]:
    """Names of the nodes reading an initializer named ``prefix*``, and of every node downstream of them."""
    if not prefixes:
        return []
    weights = {i.name for i in model.graph.initializer if i.name.startswith(tuple(prefixes))}
    tainted: set[str] = set()
    found: list[str] = []
    for node in model.graph.node:  # ONNX graphs are stored in topological order
        if any(name in weights or name in tainted for name in node.input):
            if not node.name:
                raise ValueError(f"an {node.op_type} node to exclude has no name")
            found.append(node.name)
            tainted.update(node.output)
    if not found:
        raise ValueError(f"no node reads an initializer starting with {list(prefixes)}")
    return found


def nodes_upto(model: onnx.ModelProto, name: str) -> list[str]:
    """Names of node ``name`` and of every node it depends on; ``[]`` for an empty name."""
    if not name:
        return []
    nodes = {node.name: node for node in model.graph.node}
    if name not in nodes:
        raise ValueError(f"no node named {name!r} in the graph")
    producer = {output: node for node in model.graph.node for output in node.output}
    found: set[str] = set()
    stack = [nodes[name]]
    while stack:
        node = stack.pop()
        if node.name in found:
            continue
        if not node.name:
            raise ValueError(f"an {node.op_type} node to exclude has no name")
        found.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return [node.name for node in model.graph.node if node.name in found]


def count_ops(path: Path) -> dict[str, int]:
    """Node count per op type of an ONNX file."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def quantize_model(
    src: Path, dst: Path, spec: InputSpec, images: Sequence[Path], config: QuantizeConfig
) -> dict[str, Any]:
    """Write the INT8 QDQ model of ``src`` to ``dst``, calibrated on images from the pool ``images``.

    Args:
        src: The FP32 ONNX file.
        dst: Where the INT8 file goes.
        spec: The serving input spec (preprocessing of the calibration images).
        images: The pool of calibration images; ``config.count`` of them are used.
        config: Calibration and quantization settings.

    Returns:
        A report: source and output file sizes and checksums, the settings, the excluded
        nodes and the calibration images.
    """
    chosen = choose_calibration_images(images, config.count, config.seed)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        shapes = _pre_process(src, pre)
        pre_model = _at_least_opset(onnx.load(str(pre)), QDQ_MIN_OPSET)
        onnx.save(pre_model, str(pre))
        names = {node.name for node in pre_model.graph.node}
        missing = [n for n in config.nodes_to_exclude if n not in names]
        if missing:
            raise ValueError(f"nodes to exclude not in the pre-processed graph: {missing}")
        excluded = sorted(
            set(config.nodes_to_exclude)
            | set(nodes_after(pre_model, config.exclude_after))
            | set(nodes_upto(pre_model, config.exclude_upto))
        )
        extra: dict[str, Any] = {"CalibPercentile": config.percentile, **config.extra}
        if config.method != "minmax":
            # Not CalibMaxIntermediateOutputs: in onnxruntime 1.32 it drops each full chunk
            # without merging its ranges. Strided collection merges every pass.
            extra["CalibStridedMinMax"] = _chunk(len(chosen), config.histogram_chunk)
        dst.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(pre),
            str(dst),
            ImageCalibrationReader(chosen, spec),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=config.per_channel,
            nodes_to_exclude=excluded,
            op_types_to_quantize=list(config.op_types) or None,
            calibrate_method=METHODS[config.method],
            extra_options=extra,
        )
    ops = count_ops(dst)
    return {
        "source": {"file": Path(src).name, "sha256": sha256_file(Path(src)), "bytes": Path(src).stat().st_size},
        "output": {"file": dst.name, "sha256": sha256_file(dst), "bytes": dst.stat().st_size},
        "settings": config.settings(),
        "excluded_nodes": excluded,
        "qdq_nodes": sum(ops.get(op, 0) for op in QDQ_OPS),
        "shape_inference": shapes,
        "calibration": {
            "count": len(chosen),
            "pool": len(images),
            "seed": config.seed,
            "images": [p.name for p in chosen],
        },
    }


def calibration_pool(kind: Kind, settings: TrainingSettings) -> list[Path]:
    """The images a model of ``kind`` is calibrated on: COCO128 train2017 (detection) or Tiny-ImageNet train."""
    if entry(kind).task == "detection":
        from training.data.coco import image_paths, locate_coco128

        return image_paths(locate_coco128(settings.data_dir, settings.datasets_mirror_dir), "train2017")
    from training.data.tiny_imagenet import TinyImageNet, locate

    root = locate(settings.data_dir / "datasets", settings.datasets_mirror_dir)
    return [sample.path for sample in TinyImageNet(root).train()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS, help="whose preprocessing and calibration images to use")
    parser.add_argument("--onnx", type=Path, required=True, help="the FP32 ONNX file")
    parser.add_argument("--out", type=Path, required=True, help="the INT8 ONNX file to write")
    parser.add_argument("--method", choices=sorted(METHODS), default="minmax")
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--count", type=int, default=128, help="calibration images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", nargs="*", default=[], help="node names kept in float")
    parser.add_argument("--exclude-after", nargs="*", default=[], help="initializer prefixes: keep those nodes on")
    parser.add_argument("--exclude-head", action="store_true", help="detector: --exclude-after the YOLOX head")
    parser.add_argument("--exclude-upto", default="", help="a node: it and all it depends on stay float")
    parser.add_argument("--percentile", type=float, default=99.999)
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here (default: stdout)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_training_settings()
    config = QuantizeConfig(
        method=args.method,
        per_channel=args.per_channel,
        count=args.count,
        seed=args.seed,
        nodes_to_exclude=tuple(args.exclude),
        exclude_after=tuple(args.exclude_after) + (YOLOX_HEAD if args.exclude_head else ()),
        exclude_upto=args.exclude_upto,
        percentile=args.percentile,
    )
    spec = serving_spec(args.kind, args.onnx, settings.artifacts_dir)
    report = quantize_model(args.onnx, args.out, spec.input, calibration_pool(args.kind, settings), config)
    text = json.dumps(report, indent=2)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
