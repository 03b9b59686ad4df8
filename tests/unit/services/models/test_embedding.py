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


def _softmax_spec(temperature: float = 1.0):  # type: ignore[no-untyped-def]
    from services.models.spec import EmbeddingOutput

    spec = make_spec(task="embedding")
    return spec.model_copy(update={"embedding": EmbeddingOutput(transform="softmax", temperature=temperature)})


def test_a_softmax_embedding_is_the_normalised_class_probability_vector() -> None:
    logits = np.asarray([[2.0, 0.0, -1.0]])
    model = Embedder(_softmax_spec(), FakeRunner())
    probabilities = np.exp(logits[0]) / np.exp(logits[0]).sum()
    result = model.postprocess(logits, PREPARED, EmbedParams())
    assert result["embedding"] == pytest.approx(list(probabilities / np.linalg.norm(probabilities)), rel=1e-5)
    assert result["dim"] == 3


def test_the_temperature_sharpens_the_class_probabilities() -> None:
    logits = np.asarray([1.0, 0.0])
    soft = Embedder(_softmax_spec(2.0), FakeRunner()).postprocess(logits, PREPARED, EmbedParams())["embedding"]
    sharp = Embedder(_softmax_spec(0.5), FakeRunner()).postprocess(logits, PREPARED, EmbedParams())["embedding"]
    assert sharp[0] > soft[0] and sharp[1] < soft[1]


def test_large_logits_do_not_overflow() -> None:
    result = Embedder(_softmax_spec(), FakeRunner()).postprocess(np.asarray([1000.0, 0.0]), PREPARED, EmbedParams())
    assert result["embedding"] == pytest.approx([1.0, 0.0])
