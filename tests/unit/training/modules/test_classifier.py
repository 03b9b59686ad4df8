from __future__ import annotations

import copy
import itertools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training.config import OptimConfig
from training.modules.classifier import ClassifierModule, lr_factor, parameter_groups


def test_warmup_rises_linearly_then_cosine_decays_to_zero() -> None:
    kw = {"warmup": 10, "total": 110, "schedule": "cosine"}
    assert lr_factor(0, **kw) == pytest.approx(0.01)
    assert lr_factor(5, **kw) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(60, **kw) == pytest.approx(0.5)
    assert lr_factor(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, **kw) == pytest.approx(0.0, abs=1e-12)


def test_onecycle_ends_at_a_thousandth_of_the_peak() -> None:
    assert lr_factor(100, warmup=0, total=100, schedule="onecycle") == pytest.approx(1e-3)
    assert lr_factor(0, warmup=0, total=100, schedule="onecycle") == pytest.approx(1.0)


def test_factor_is_monotonic_after_warmup() -> None:
    values = [lr_factor(s, warmup=20, total=200, schedule="cosine") for s in range(20, 201)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert not any(math.isnan(v) for v in values)


def test_no_weight_decay_on_biases_and_norms_and_frozen_params_are_left_out() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 5, 5))
    net[0].weight.requires_grad_(False)
    decay, no_decay = parameter_groups(net, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2}
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert not any(p is net[0].weight for p in decay["params"] + no_decay["params"])


def test_a_short_fit_lowers_the_loss_and_logs_the_named_metrics() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    module = ClassifierModule(nn.Linear(8, 2), 2, OptimConfig(lr=0.05, warmup_steps=4, label_smoothing=0.0))
    trainer = pl.Trainer(
        max_epochs=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    before = nn.functional.cross_entropy(module(x), y).item()
    trainer.fit(module, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5"} <= set(metrics)
    assert metrics["val/loss"].item() < before
    assert metrics["val/acc"].item() > 0.8
    assert metrics["val/acc_top5"].item() == 1.0  # two classes: the truth is always in the top 2


def test_channels_last_trains_the_net_in_nhwc_and_computes_the_same_loss() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]))
    plain = ClassifierModule(copy.deepcopy(net), 2, OptimConfig())
    nhwc = ClassifierModule(net, 2, OptimConfig(), channels_last=True)
    assert nhwc.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    seen: list[torch.Tensor] = []
    nhwc.net[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    loss_nhwc, _, _ = nhwc._step(batch)
    loss_plain, _, _ = plain._step(batch)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert loss_nhwc.item() == pytest.approx(loss_plain.item(), abs=1e-5)
    features = (torch.randn(4, 4), torch.tensor([0, 1, 0, 1]))  # stored 2-d features pass through untouched
    ClassifierModule(nn.Linear(4, 2), 2, OptimConfig(), channels_last=True)._step(features)
