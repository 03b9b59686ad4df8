from __future__ import annotations

import pytest
import torch

from tests.unit.training.tree import WNIDS
from training import lite0
from training.modules.lite0_net import FrozenTrunkNet, Tail, Trunk, build_classifier, split


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_classifier(len(WNIDS), WNIDS, drop_rate=0.2)


def test_the_new_head_starts_from_the_imagenet_rows_of_the_same_wnids(model: torch.nn.Module) -> None:
    imagenet = lite0.load_lite0()
    rows = {e["wnid"]: e["id"] for e in lite0.imagenet_labels()}
    assert model.classifier.out_features == len(WNIDS)
    for i, wnid in enumerate(WNIDS):
        assert torch.equal(model.classifier.weight[i], imagenet.classifier.weight[rows[wnid]])
        assert torch.equal(model.classifier.bias[i], imagenet.classifier.bias[rows[wnid]])


def test_a_wnid_list_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="wnids"):
        build_classifier(5, WNIDS)


def test_trunk_then_tail_equals_the_whole_model(model: torch.nn.Module) -> None:
    trunk, tail = split(model, 4)
    assert isinstance(trunk, Trunk) and isinstance(tail, Tail)
    model.eval()
    tail.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = trunk(x)
        assert features.shape == (2, 112, 14, 14)
        assert torch.allclose(tail(features), model(x), atol=1e-5)


def test_the_trunk_stays_frozen_and_in_eval_mode_when_the_net_trains(model: torch.nn.Module) -> None:
    trunk, tail = split(model, 4)
    net = FrozenTrunkNet(trunk, tail).train()
    assert not trunk.training and not any(m.training for m in trunk.modules())
    assert tail.training
    assert not any(p.requires_grad for p in trunk.parameters())
    net(torch.randn(2, 3, 96, 96)).sum().backward()
    assert all(p.grad is None for p in trunk.parameters())
    assert tail.classifier.weight.grad is not None


def test_freeze_through_minus_one_trains_everything_and_too_deep_a_cut_is_refused(model: torch.nn.Module) -> None:
    trunk, whole = split(model, -1)
    assert trunk is None and whole is model
    with pytest.raises(ValueError, match="no block"):
        split(model, len(model.blocks) - 1)
