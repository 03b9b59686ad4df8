"""The release gate's thresholds, read from one file (``training/configs/gate/release_gate.yaml``).

The file has ``defaults`` and, per model, its headline metric, its artifact folder and any threshold
that differs from the defaults. :func:`load_gate_config` returns the merged :class:`ModelGate` of one model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from kernel.paths import REPO_ROOT

# In a folder of its own: training/configs/*.yaml are training configs (tests/unit/training/test_config.py).
DEFAULT_CONFIG = REPO_ROOT / "training" / "configs" / "gate" / "release_gate.yaml"


class Thresholds(BaseModel):
    """What a candidate may lose against production (see the config file's header for each check)."""

    model_config = ConfigDict(extra="forbid")

    metric_drop_points: float = Field(default=0.5, ge=0)
    int8_loss_points: float = Field(default=1.0, ge=0)
    ece_increase_points: float = Field(default=1.0, ge=0)
    p95_slowdown_percent: float = Field(default=10.0, ge=0)
    parity_max_abs_diff: float = Field(default=1e-3, gt=0)
    latency_iterations: int = Field(default=500, ge=1)
    latency_warmup: int = Field(default=20, ge=0)
    threads: int = Field(default=1, ge=1)
    seed: int = 0


class ModelGate(Thresholds):
    """One model's gate: its thresholds, headline metric, report folder and PyTorch source."""

    name: str
    metric: str
    artifacts: str
    torch_state: Path | None = None

    def report_dir(self, artifacts_dir: Path) -> Path:
        """``artifacts/<the model's folder>/release``: the reports live beside the model's artifacts."""
        return artifacts_dir / self.artifacts / "release"


class GateConfigError(ValueError):
    """The gate's configuration file is missing a model or holds an unknown setting."""


def load_gate_config(name: str, path: Path = DEFAULT_CONFIG) -> ModelGate:
    """The gate of model ``name``: the file's defaults overlaid with the model's own section.

    Raises:
        GateConfigError: the file has no section for ``name``, or a setting is invalid.
    """
    data: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {}
    models: dict[str, Any] = data.get("models") or {}
    if name not in models:
        raise GateConfigError(f"{path} has no gate for model {name!r} (it has: {', '.join(models) or 'none'})")
    try:
        return ModelGate.model_validate({**(data.get("defaults") or {}), **models[name], "name": name})
    except ValueError as exc:
        raise GateConfigError(f"{path}, model {name!r}: {exc}") from exc
