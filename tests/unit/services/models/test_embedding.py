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


class _HalvesRunner:
    """Logits [mean of the left half, mean of the right half] of each image; records the batches it ran."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        half = batch.shape[-1] // 2
        return np.stack([batch[..., :half].mean(axis=(1, 2, 3)), batch[..., half:].mean(axis=(1, 2, 3))], axis=1)


def _flip_spec(flip: bool):  # type: ignore[no-untyped-def]
    from services.models.spec import EmbeddingOutput

    spec = make_spec(task="embedding")
    return spec.model_copy(update={"embedding": EmbeddingOutput(transform="softmax", flip=flip)})


def test_flip_averages_the_class_probabilities_of_the_image_and_its_mirror_in_one_call() -> None:
    images = np.zeros((3, 3, 4, 4), np.float32)
    images[0, :, :, :2] = 2.0  # bright on the left
    images[1, :, :, 2:] = 1.0  # bright on the right
    images[2] = 0.5  # symmetric
    runner = _HalvesRunner()
    model = Embedder(_flip_spec(True), runner)  # type: ignore[arg-type]
    outputs = model.predict(images)
    assert len(runner.batches) == 1 and runner.batches[0].shape == (6, 3, 4, 4)
    assert np.array_equal(runner.batches[0][3:], images[..., ::-1])
    assert outputs.shape == (3, 2, 2)
    plain = Embedder(_flip_spec(False), _HalvesRunner())  # type: ignore[arg-type]
    for i in range(3):
        one_view = plain.vector(plain.predict(images[i : i + 1])[0])
        both = model.vector(outputs[i])
        # The mirror swaps the halves, so the two views' probabilities are each other reversed: the mean is uniform.
        assert both == pytest.approx([2**-0.5, 2**-0.5], rel=1e-6)
        probabilities = np.exp(outputs[i, 0]) / np.exp(outputs[i, 0]).sum()
        assert one_view == pytest.approx(probabilities / np.linalg.norm(probabilities), rel=1e-5)
    assert plain.vector(plain.predict(images[:1])[0])[0] > 0.9  # without the mirror the left half wins


def test_a_flipping_embedder_warms_up_and_embeds_through_the_whole_contract() -> None:
    model = Embedder(_flip_spec(True), _HalvesRunner())  # type: ignore[arg-type]
    model.warm_up()
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = 255
    (prediction,) = model.infer([image], [EmbedParams()])
    assert prediction.result["dim"] == 2
    assert prediction.result["embedding"] == pytest.approx([2**-0.5, 2**-0.5], rel=1e-5)
