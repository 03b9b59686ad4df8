"""SearchEngine over a real GalleryIndex and a ModelWorker whose embedder runner is a fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from kernel.errors import InvalidParameter, ModelUnavailable, ServiceError
from services.index import search as search_module
from services.index.base import Hit
from services.index.gallery import GalleryIndex
from services.index.search import SearchEngine, SearchItem
from services.models.registry import ModelPool
from services.models.spec import EmbeddingOutput
from services.models.worker import InferenceItem, ModelWorker, Outcome
from tests.unit.fakes import FakeFactory, FakeRunner, make_entry, sample

AXES = np.eye(3, dtype=np.float32)


def embed_by_pixel_value(batch: np.ndarray) -> np.ndarray:
    """Image of value v (identity preprocessing) -> unit vector on axis v; 255 is poison."""
    values = batch[:, 0, 0, 0].astype(int)
    if (values == 255).any():
        raise RuntimeError("poison input")
    return AXES[values]


def image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, dtype=np.uint8)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SearchEngine]:
    entry = make_entry(name="embedder", version="v3", task="embedding")
    pool = ModelPool("embedder", [entry], FakeFactory({("v3", "fp32"): FakeRunner(fn=embed_by_pixel_value)}))
    index = GalleryIndex(tmp_path / "gallery.sqlite3", dim=3)
    index.add(
        np.asarray([[1, 0, 0], [0, 1, 0], [0.8, 0.6, 0]], dtype=np.float32),
        [{"name": "x"}, {"name": "y"}, {"name": "mostly-x"}],
        ids=["x", "y", "mostly-x"],
    )
    yield SearchEngine(ModelWorker(pool), index)
    index.close()


def test_search_returns_hits_per_item_and_per_item_errors(engine: SearchEngine) -> None:
    results = engine.search(
        [
            SearchItem(image=image(0), top_k=2),
            SearchItem(image=image(0), params={"bogus": 1}),
            SearchItem(image=image(1), top_k=1),
        ]
    )
    assert [[h["id"] for h in r.hits] for r in results] == [["x", "mostly-x"], [], ["y"]]
    assert results[0].hits[1]["score"] == pytest.approx(0.8)
    assert results[0].hits[0]["metadata"] == {"name": "x"}
    assert results[0].prediction is not None and results[0].prediction.version == "v3"
    assert results[0].gallery_size == results[2].gallery_size == 3
    assert results[1].error is not None and results[1].error["type"] == "invalid-parameter"
    assert results[1].prediction is None and results[1].gallery_size == 0


def test_search_poison_item_fails_alone(engine: SearchEngine) -> None:
    results = engine.search([SearchItem(image=image(1)), SearchItem(image=image(255)), SearchItem(image=image(0))])
    assert [r.error["type"] if r.error else r.hits[0]["id"] for r in results] == ["y", "model-unavailable", "x"]


def test_search_when_every_item_fails_never_queries_the_index(
    engine: SearchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(queries: np.ndarray, top_k: int) -> list[list[object]]:
        raise AssertionError("index searched")

    monkeypatch.setattr(engine.index, "search", refuse)
    (result,) = engine.search([SearchItem(image=image(0), version="v404")])
    assert result.error is not None and result.error["type"] == "version-not-found"


def test_add_stores_embedding_and_updates_gallery_size(engine: SearchEngine) -> None:
    answer = engine.add(InferenceItem(image=image(2)), {"name": "z"})
    assert answer["model"] == "embedder" and answer["version"] == "v3"
    assert engine.index.contains(answer["id"])
    assert engine.size() == 4
    assert sample("cv_gallery_size", {}) == 4.0
    (result,) = engine.search([SearchItem(image=image(2), top_k=1)])
    assert result.hits[0]["id"] == answer["id"]
    assert result.hits[0]["metadata"] == {"name": "z"}


def test_add_raises_the_items_error(engine: SearchEngine) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        engine.add(InferenceItem(image=image(255)), {})
    assert caught.value.status_code == 503
    with pytest.raises(ServiceError) as not_found:
        engine.add(InferenceItem(image=image(0), version="v404"), {})
    assert not_found.value.status_code == 404
    assert engine.size() == 3


def test_add_with_invalid_params_raises_invalid_parameter(engine: SearchEngine) -> None:
    with pytest.raises(InvalidParameter):
        engine.add(InferenceItem(image=image(0), params={"bogus": 1}), {})


def test_remove_updates_gallery_size(engine: SearchEngine) -> None:
    assert engine.remove("x") is True
    assert engine.remove("x") is False
    assert engine.size() == 2
    assert sample("cv_gallery_size", {}) == 2.0


def test_embed_returns_worker_outcomes(engine: SearchEngine) -> None:
    (outcome,) = engine.embed([InferenceItem(image=image(1))])
    assert outcome.prediction is not None
    assert outcome.prediction.result == {"embedding": [0.0, 1.0, 0.0], "dim": 3}


@pytest.mark.parametrize("top_k", [0, 101])
def test_search_item_rejects_top_k_out_of_range(top_k: int) -> None:
    with pytest.raises(ValidationError):
        SearchItem(image=image(0), top_k=top_k)


def test_vector_of_outcome_without_prediction_raises() -> None:
    with pytest.raises(ServiceError, match="embedding missing"):
        search_module._vector(Outcome(error={"type": "x"}))


def test_a_query_from_another_embedder_version_gets_409_not_meaningless_neighbours(tmp_path: Path) -> None:
    entry = make_entry(name="embedder", version="v4", task="embedding")
    pool = ModelPool("embedder", [entry], FakeFactory({("v4", "fp32"): FakeRunner(fn=embed_by_pixel_value)}))
    index = GalleryIndex(tmp_path / "gallery.sqlite3", dim=3)
    index.add(np.eye(3, dtype=np.float32)[:1], [{}], embedder="embedder:v3")
    engine = SearchEngine(ModelWorker(pool), index)
    (result,) = engine.search([SearchItem(image=image(0))])
    assert result.hits == [] and result.error is not None
    assert result.error["type"] == "gallery-model-mismatch" and "embedder:v3" in result.error["detail"]
    with pytest.raises(ServiceError, match="embedder:v3"):
        engine.add(InferenceItem(image=image(1)), {})
    index.clear()
    assert engine.add(InferenceItem(image=image(1)), {})["version"] == "v4"
    assert index.embedder == "embedder:v4"
    assert engine.search([SearchItem(image=image(1))])[0].hits[0]["score"] == pytest.approx(1.0)
    index.close()


@pytest.fixture
def expanding(tmp_path: Path) -> Iterator[tuple[SearchEngine, list[int]]]:
    """An engine whose embedder version says ``query_expansion=2``, and the ``expand`` of every index search."""
    entry = make_entry(name="embedder", version="v3", task="embedding")
    entry = entry.model_copy(
        update={"spec": entry.spec.model_copy(update={"embedding": EmbeddingOutput(query_expansion=2)})}
    )
    pool = ModelPool("embedder", [entry], FakeFactory({("v3", "fp32"): FakeRunner(fn=embed_by_pixel_value)}))
    index = GalleryIndex(tmp_path / "gallery.sqlite3", dim=3)
    index.add(AXES, [{}, {}, {}], ids=["x", "y", "z"])
    asked: list[int] = []
    searched = index.search

    def spy(queries: np.ndarray, top_k: int, expand: int = 0) -> list[list[Hit]]:
        asked.append(expand)
        return searched(queries, top_k, expand)

    index.search = spy  # type: ignore[method-assign]
    yield SearchEngine(ModelWorker(pool), index), asked
    index.close()


def test_search_expands_as_the_version_says_unless_the_request_says_otherwise(
    expanding: tuple[SearchEngine, list[int]],
) -> None:
    engine, asked = expanding
    default, plain, wider = engine.search(
        [SearchItem(image=image(0)), SearchItem(image=image(1), expand=0), SearchItem(image=image(1), expand=3)]
    )
    assert (default.expand, plain.expand, wider.expand) == (2, 0, 3)
    assert sorted(asked) == [0, 2, 3], "one index search per expansion"
    assert default.hits[0]["id"] == "x" and plain.hits[0]["id"] == wider.hits[0]["id"] == "y"


def test_search_without_a_query_expansion_setting_searches_plainly(engine: SearchEngine) -> None:
    (result,) = engine.search([SearchItem(image=image(0))])
    assert result.expand == 0


def test_search_item_refuses_an_expansion_out_of_range() -> None:
    with pytest.raises(ValidationError):
        SearchItem(image=image(0), expand=51)
