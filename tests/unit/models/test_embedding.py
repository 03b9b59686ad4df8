"""The embedder's L2 normalisation guard."""

from __future__ import annotations

import numpy as np
import pytest

from services.models.embedding import Embedder, EmbedParams
from services.models.preprocessing import Prepared
from tests.unit.fakes import FakeRunner, make_spec

PREPARED = Prepared(tensor=np.zeros((3, 8, 8), np.float32), scale=1.0, offset=(0.0, 0.0), original_size=(8, 8))


def test_embedder_normalises_unnormalised_output() -> None:
    model = Embedder(make_spec(task="embedding"), FakeRunner())
    result = model.postprocess(np.asarray([[3.0, 4.0]]), PREPARED, EmbedParams())
    assert result == {"embedding": pytest.approx([0.6, 0.8]), "dim": 2}


def test_embedder_keeps_unit_and_zero_vectors() -> None:
    model = Embedder(make_spec(task="embedding"), FakeRunner())
    unit = np.asarray([0.0, 1.0, 0.0], dtype=np.float32)
    assert model.postprocess(unit, PREPARED, EmbedParams())["embedding"] == [0.0, 1.0, 0.0]
    assert model.postprocess(np.zeros(3), PREPARED, EmbedParams())["embedding"] == [0.0, 0.0, 0.0]
