from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tests.unit.training.tree import WNIDS
from training import lite0
from training.modules.lite0_net import (
    FrozenNorms,
    FrozenTrunkNet,
    Tail,
    Trunk,
    build_classifier,
    load_weights,
    split,
    weights_digest,
)


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


def test_load_weights_takes_a_run_folder_or_its_file_and_refuses_another_network(tmp_path: Path) -> None:
    source = build_classifier(len(WNIDS), WNIDS)
    with torch.no_grad():
        source.classifier.bias.fill_(0.5)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    for where in (tmp_path, tmp_path / "model.pt"):
        target = build_classifier(len(WNIDS), WNIDS)
        load_weights(target, where)
        assert torch.equal(target.classifier.bias, torch.full((len(WNIDS),), 0.5))
    assert weights_digest(tmp_path) == hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_weights(build_classifier(len(WNIDS), WNIDS), tmp_path / "missing")
    with pytest.raises(ValueError, match="does not hold this network"):
        load_weights(build_classifier(5), tmp_path)  # a 5-class head: other shapes


def test_frozen_norms_keep_their_statistics_while_their_shift_trains() -> None:
    net = FrozenNorms(build_classifier(len(WNIDS), WNIDS)).train()  # not the fixture: split() froze its trunk
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert net.training and net.net.training  # dropout and the rest train
    before = {id(m): m.running_mean.clone() for m in norms}
    net(torch.randn(4, 3, 64, 64) * 3 + 1).sum().backward()
    assert all(torch.equal(m.running_mean, before[id(m)]) for m in norms)
    assert all(m.bias.grad is not None for m in norms)
    assert not any(m.training for m in net.train(True).modules() if isinstance(m, torch.nn.BatchNorm2d))
