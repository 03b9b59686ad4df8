from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.unit.training.tree import make_tiny_imagenet
from training.data.datasets import FeatureDataset
from training.data.tiny_imagenet import TinyImageNet
from training.features import build_cache, cache_key


class CountingTrunk(nn.Module):
    """A cheap stand-in for the Lite0 trunk: 4 x 7 x 7 average-pooled maps; counts images seen."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return nn.functional.adaptive_avg_pool2d(self.conv(x), 7)


@pytest.fixture
def samples(tmp_path: Path) -> list:
    return TinyImageNet(make_tiny_imagenet(tmp_path, per_class=3)).train()


def test_the_cache_holds_one_map_per_view_and_image(samples: list, tmp_path: Path) -> None:
    trunk = CountingTrunk()
    features, labels = build_cache(
        trunk, samples, tmp_path / "c", views=2, image_size=32, strength=1.0, seed=0, batch_size=4, bf16=False
    )
    assert features.shape == (2, len(samples), 4, 7, 7) and features.dtype == np.float16
    assert labels.tolist() == [s.label for s in samples]
    assert trunk.seen == 2 * len(samples) + 1  # one probe to learn the output shape
    assert not np.array_equal(features[0], features[1])  # view 1 is augmented
    assert json.loads((tmp_path / "c" / "progress.json").read_text())["complete"] is True


def test_view_zero_is_the_eval_view_and_a_complete_cache_is_not_rebuilt(samples: list, tmp_path: Path) -> None:
    trunk = CountingTrunk()
    first, _ = build_cache(trunk, samples, tmp_path / "c", views=1, image_size=32, strength=1.0, seed=0, bf16=False)
    again = CountingTrunk()
    second, _ = build_cache(again, samples, tmp_path / "c", views=1, image_size=32, strength=1.0, seed=0, bf16=False)
    assert again.seen == 0
    assert np.array_equal(first, second)


def test_an_interrupted_build_resumes_where_it_stopped(samples: list, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    reference, _ = build_cache(
        CountingTrunk(), samples, tmp_path / "ref", views=1, image_size=32, strength=1.0, seed=0, bf16=False
    )
    torch.manual_seed(0)
    trunk = CountingTrunk()
    trunk.load_state_dict(CountingTrunk().state_dict())
    build_cache(trunk, samples, folder, views=1, image_size=32, strength=1.0, seed=0, bf16=False)
    progress = folder / "progress.json"
    progress.write_text(json.dumps({"0": 4}))  # as if it had stopped after four images
    resumed = CountingTrunk()
    resumed.load_state_dict(trunk.state_dict())
    features, _ = build_cache(resumed, samples, folder, views=1, image_size=32, strength=1.0, seed=0, bf16=False)
    assert resumed.seen == len(samples) - 4 + 1
    assert features.shape == reference.shape


def test_the_key_changes_with_the_samples_and_the_settings(samples: list) -> None:
    base = cache_key(samples, views=2, through=4)
    assert base == cache_key(list(samples), views=2, through=4)
    assert base != cache_key(samples[:-1], views=2, through=4)
    assert base != cache_key(samples, views=1, through=4)


def test_feature_dataset_reads_view_zero_for_eval_and_any_view_for_train() -> None:
    features = np.stack([np.zeros((5, 2, 1, 1)), np.ones((5, 2, 1, 1))]).astype(np.float16)
    labels = np.arange(5)
    evaluation = FeatureDataset(features, labels, random_view=False)
    assert len(evaluation) == 5
    x, y = evaluation[3]
    assert x.dtype == torch.float32 and float(x.sum()) == 0.0 and y == 3
    training = FeatureDataset(features, labels, random_view=True, seed=1)
    seen = {float(training[0][0].sum()) for _ in range(50)}
    assert seen == {0.0, 2.0}


def test_feature_dataset_refuses_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="do not match"):
        FeatureDataset(np.zeros((1, 4, 2, 1, 1), np.float16), np.arange(3), random_view=False)
