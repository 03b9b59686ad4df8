"""One training run, described by a YAML file under ``training/configs/``.

Every field has a default, so a config file only says what differs. ``--set a.b=value``
overrides a field from the command line (the value is parsed as YAML).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the images come from and how they are turned into batches."""

    root: Path | None = None  # None: <settings.data_dir>/datasets/tiny-imagenet-200, unpacked from the mirror
    train_per_class: int | None = None  # keep the first N train images of each class
    val_limit: int | None = None  # evaluate on the first N val images
    image_size: int = 224
    augment_strength: float = Field(default=1.0, ge=0.0, le=1.0)
    views: int = Field(default=2, ge=1)  # feature cache: view 0 is the eval view, the others augmented
    batch_size: int = Field(default=128, ge=1)
    num_workers: int = Field(default=2, ge=0)


class ModelConfig(_Strict):
    """The network and which part of it trains."""

    arch: Literal["tf_efficientnet_lite0"] = "tf_efficientnet_lite0"
    # Stem and blocks[0..freeze_through] stay frozen (eval-mode BatchNorm); -1 trains everything.
    freeze_through: int = Field(default=4, ge=-1, le=6)
    # Start the 200-class head from the ImageNet-1k rows of the same wnids.
    init_head_from_imagenet: bool = True
    # Run the frozen part once per image view and train on its stored outputs.
    feature_cache: bool = True
    drop_rate: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Start from these weights instead of ImageNet's: a run folder's ``model.pt`` (a state dict of the whole 200-class
    # network, as ``python -m training.train`` and ``python -m training.soup`` write it), or that folder.
    init_from: Path | None = None
    # Every BatchNorm of the trained part keeps its running statistics (eval mode) while its scale and shift still
    # train. Needed where ``init_from`` is a soup: its BatchNorms are identities holding the folded shift, and
    # batch statistics would undo the folding.
    freeze_norms: bool = False


class OptimConfig(_Strict):
    """AdamW with a linear warm-up, then a cosine or one-cycle decay."""

    lr: float = Field(default=5e-4, gt=0.0)
    weight_decay: float = Field(default=0.05, ge=0.0)
    warmup_steps: int = Field(default=300, ge=0)
    schedule: Literal["cosine", "onecycle"] = "cosine"
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(default=1.0, gt=0.0)


class TrainerConfig(_Strict):
    """What Lightning's Trainer gets."""

    epochs: int = Field(default=4, ge=1)
    precision: str = "bf16-mixed"  # CPU: bf16-mixed; CUDA: 16-mixed or bf16-mixed
    accelerator: str = "auto"
    devices: int = 1
    seed: int = 42
    fast_dev_run: bool | int = False
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    log_every_n_steps: int = 20
    threads: int | None = None  # torch intra-op threads; None: torch's default
    # NHWC activations and weights: 1.25x the images/s of NCHW for Lite0 under bf16 on this CPU (AVX-512 BF16)
    channels_last: bool = False


class TrainConfig(_Strict):
    """A whole run. Its outputs go to ``<out_dir>/<name>/``."""

    name: str
    out_dir: Path = Path("runs")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.name

    @classmethod
    def from_yaml(cls, path: Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """Read ``path`` and apply ``key.sub=value`` overrides."""
        raw: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"override {item!r} is not key=value")
            node = raw
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(value)
        return cls.model_validate(raw)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
