"""The LightningModule: cross-entropy with label smoothing, AdamW, warm-up then decay.

The network is injected (a whole model, a :class:`~training.modules.lite0_net.Tail` over
stored features, or a frozen trunk plus tail), so one module trains all three ways.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from training.config import OptimConfig


def lr_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``.

    Linear warm-up from 1 % over ``warmup`` steps, then cosine to 0 (``cosine``) or a
    one-cycle style linear-then-cosine annealing to 1e-3 of the peak (``onecycle``).
    """
    if warmup and step < warmup:
        return 0.01 + 0.99 * step / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        return 1e-3 + (1.0 - 1e-3) * cosine
    return cosine


def parameter_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters; no weight decay on biases and norm scales (1-d tensors)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in net.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class ClassifierModule(pl.LightningModule):
    """Trains ``net`` as a ``num_classes``-way classifier; logs ``train/loss``, ``val/acc``, ..."""

    def __init__(self, net: nn.Module, num_classes: int, optim: OptimConfig, *, channels_last: bool = False) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.num_classes = num_classes
        self.optim = optim
        self.channels_last = channels_last
        self.save_hyperparameters({"num_classes": num_classes, "optim": optim.model_dump()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.net(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=self.optim.label_smoothing)
        return loss, logits, y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        top5 = logits.topk(min(5, self.num_classes), dim=1).indices
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/acc", (top5[:, 0] == y).float().mean(), prog_bar=True)
        self.log("val/acc_top5", (top5 == y[:, None]).any(1).float().mean())

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(parameter_groups(self.net, self.optim.weight_decay), lr=self.optim.lr)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(self.optim.warmup_steps, max(0, total // 5))

        def factor(step: int) -> float:
            return lr_factor(step, warmup=warmup, total=total, schedule=self.optim.schedule)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
