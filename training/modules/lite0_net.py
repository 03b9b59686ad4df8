"""EfficientNet-Lite0 with a new head, cut into a frozen trunk and a trainable tail.

The trunk and tail share their parameters with the full timm model, so training the
tail trains the model that is later exported as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from kernel.paths import sha256_file
from training import lite0

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet


def build_classifier(num_classes: int, wnids: Sequence[str] | None = None, drop_rate: float = 0.0) -> EfficientNet:
    """ImageNet-1k Lite0 with a ``num_classes`` head.

    Args:
        num_classes: Size of the new head.
        wnids: One WordNet id per new class. Rows of the ImageNet head with the same wnid
            initialise the new head (a class without one keeps a small random row), so
            the model starts where the zero-shot 200-way classifier is.
        drop_rate: Dropout before the head while training.
    """
    model = lite0.load_lite0()
    old = model.classifier
    model.reset_classifier(num_classes)
    model.drop_rate = drop_rate
    if wnids is not None:
        if len(wnids) != num_classes:
            raise ValueError(f"{len(wnids)} wnids for {num_classes} classes")
        rows = {entry["wnid"]: entry["id"] for entry in lite0.imagenet_labels()}
        with torch.no_grad():
            for i, wnid in enumerate(wnids):
                if wnid in rows:
                    model.classifier.weight[i] = old.weight[rows[wnid]]
                    model.classifier.bias[i] = old.bias[rows[wnid]]
    return model


def weights_file(source: Path) -> Path:
    """A run's ``model.pt``: ``source`` itself, or the file of that name in the run folder ``source``.

    Raises:
        FileNotFoundError: no such file.
    """
    path = source / "model.pt" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(f"no weights to start from at {path}")
    return path


def weights_digest(source: Path) -> str:
    """The sha256 of the weights file :func:`weights_file` finds (it names what a feature cache was made with)."""
    return sha256_file(weights_file(source))


def load_weights(model: EfficientNet, source: Path) -> None:
    """Load a whole-network state dict into ``model``: a run's ``model.pt``, or the run folder holding it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the state dict is not of this network (missing or unexpected keys, other shapes).
    """
    path = weights_file(source)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # torch reports key and shape mismatches this way
        raise ValueError(f"{path} does not hold this network's weights: {exc}") from None


class FrozenNorms(nn.Module):
    """``net`` with every BatchNorm in eval mode, whatever mode the wrapper is put in.

    The norms' scale and shift still train (they are parameters); their running statistics stay as loaded.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(True)

    def train(self, mode: bool = True) -> FrozenNorms:
        super().train(mode)
        for module in self.net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Trunk(nn.Module):
    """Stem and ``blocks[0..through]``: frozen, always in eval mode."""

    def __init__(self, model: EfficientNet, through: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(model.conv_stem, model.bn1, *model.blocks[: through + 1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Trunk:
        return super().train(False)  # frozen BatchNorm keeps its ImageNet statistics

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class Tail(nn.Module):
    """``blocks[through+1..]``, the head convolution, pooling, dropout and the classifier.

    It holds the model's own sub-modules (never the whole model, so putting the tail in
    training mode leaves the trunk's BatchNorm alone).
    """

    def __init__(self, model: EfficientNet, through: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*model.blocks[through + 1 :])
        self.conv_head, self.bn2 = model.conv_head, model.bn2
        self.global_pool, self.classifier = model.global_pool, model.classifier
        self.drop_rate = float(model.drop_rate)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(features)))
        x = F.dropout(self.global_pool(x), p=self.drop_rate, training=self.training)
        return self.classifier(x)


class FrozenTrunkNet(nn.Module):
    """Trunk then tail, for training on images instead of stored features."""

    def __init__(self, trunk: Trunk, tail: nn.Module) -> None:
        super().__init__()
        self.trunk, self.tail = trunk, tail

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.trunk(images)
        return self.tail(features)


def split(model: EfficientNet, through: int) -> tuple[Trunk | None, nn.Module]:
    """Cut ``model`` after ``blocks[through]``; ``through == -1`` trains the whole model."""
    if through < 0:
        return None, model
    if through >= len(model.blocks) - 1:
        raise ValueError(f"freeze_through={through} leaves no block to train (the model has {len(model.blocks)})")
    return Trunk(model, through), Tail(model, through)
