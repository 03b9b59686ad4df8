"""The PostgreSQL gallery on the real server (a fresh schema per test): replicas converge through NOTIFY,
catch up after a missed notification or a cut connection, and search what another replica added."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.errors import GalleryModelMismatch
from services.config import ServingSettings
from services.index.postgres import PostgresGallery
from services.index.store import open_gallery
from services.index.vectors import IndexParams
from tests.integration.conftest import postgres_url
from tests.integration.proxy import TcpProxy
from tests.integration.test_inference_log_postgres import direct_url

pytestmark = pytest.mark.integration

WAIT_S = 20.0  # generous: convergence is asserted, not its speed


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the replicas did not converge"
        time.sleep(0.05)


@pytest.fixture
def url(pg_schema: str, postgres_endpoint: tuple[str, int]) -> str:
    engine = create_db_engine(direct_url(postgres_endpoint, pg_schema))
    migrate.upgrade(engine)
    engine.dispose()
    return postgres_url(postgres_endpoint[1], pg_schema, postgres_endpoint[0])


@pytest.fixture
def replicas(url: str) -> Iterator[Callable[..., PostgresGallery]]:
    opened: list[PostgresGallery] = []

    def open_replica(replica_url: str = url, **kwargs: object) -> PostgresGallery:
        kwargs.setdefault("catchup_interval_s", 60.0)  # only a notification wakes the listener in time
        gallery = PostgresGallery(replica_url, **kwargs)  # type: ignore[arg-type]
        opened.append(gallery)
        return gallery

    yield open_replica
    for gallery in opened:
        gallery.close()


def ids_found(gallery: PostgresGallery, query: np.ndarray, top_k: int = 5) -> list[str]:
    return [hit.id for hit in gallery.search(query[None, :], top_k)[0]]


def test_search_sees_an_item_added_through_the_other_replica(replicas: Callable[..., PostgresGallery]) -> None:
    a, b = replicas(), replicas()
    vectors = unit(3)
    a.add(vectors, [{"n": i} for i in range(3)], ids=["x", "y", "z"], embedder="embedder:v2")
    eventually(lambda: len(b) == 3)
    hit = b.search(vectors[1][None, :], 1)[0][0]
    assert (hit.id, hit.metadata, round(hit.score, 4)) == ("y", {"n": 1}, 1.0)
    assert b.embedder == "embedder:v2"


def test_a_removal_through_one_replica_reaches_the_other(replicas: Callable[..., PostgresGallery]) -> None:
    a, b = replicas(), replicas()
    vectors = unit(3)
    a.add(vectors, [{}, {}, {}], ids=["x", "y", "z"])
    eventually(lambda: len(b) == 3)
    assert b.remove("y") is True
    assert b.remove("y") is False
    eventually(lambda: len(a) == 2)
    assert "y" not in ids_found(a, vectors[1])
    assert not a.contains("y") and a.contains("x")


def test_readding_a_removed_id_revives_it_everywhere(replicas: Callable[..., PostgresGallery]) -> None:
    a, b = replicas(), replicas()
    vectors = unit(2)
    a.add(vectors[:1], [{"v": 1}], ids=["x"])
    a.remove("x")
    a.add(vectors[1:], [{"v": 2}], ids=["x"])
    eventually(lambda: len(b) == 1 and b.search(vectors[1][None, :], 1)[0][0].metadata == {"v": 2})
    assert ids_found(b, vectors[1], 1) == ["x"]


def test_a_missed_notification_is_recovered_by_the_periodic_catch_up(
    url: str, replicas: Callable[..., PostgresGallery]
) -> None:
    b = replicas(catchup_interval_s=0.3)
    vector = unit(1)[0]
    with psycopg.connect(url) as conn:  # a write whose NOTIFY never came (no NOTIFY at all)
        conn.execute(
            "INSERT INTO gallery_item (id, vector, dim, meta, deleted, created_at) "
            "VALUES ('quiet', %s, 8, '{}', false, now())",
            (vector.tobytes(),),
        )
    eventually(lambda: len(b) == 1)
    assert ids_found(b, vector) == ["quiet"]


def test_a_replica_catches_up_after_its_connection_was_cut(
    replicas: Callable[..., PostgresGallery], pg_proxy: TcpProxy, pg_schema: str
) -> None:
    a = replicas()
    b = replicas(postgres_url(pg_proxy.port, pg_schema))
    vectors = unit(4)
    a.add(vectors[:2], [{}, {}], ids=["x", "y"])
    eventually(lambda: len(b) == 2)
    pg_proxy.stop()  # b hears nothing while cut: these notifications are lost to it
    a.add(vectors[2:], [{}, {}], ids=["z", "w"])
    a.remove("x")
    time.sleep(0.5)
    assert len(b) == 2  # still the old view
    pg_proxy.start()
    eventually(lambda: len(b) == 3)
    assert sorted(ids_found(b, vectors[0], 10)) == ["w", "y", "z"]
    b.add(unit(1, seed=9), [{}], ids=["v"])  # its writer re-connects too
    eventually(lambda: len(a) == 4)


def test_a_new_replica_loads_only_live_rows(replicas: Callable[..., PostgresGallery]) -> None:
    a = replicas()
    a.add(unit(3), [{}, {}, {}], ids=["x", "y", "z"], embedder="embedder:v2")
    a.remove("z")
    late = replicas()
    assert len(late) == 2 and late.embedder == "embedder:v2"
    assert late.last_seq == a.last_seq


def test_another_embedder_is_refused_whichever_replica_it_reaches(replicas: Callable[..., PostgresGallery]) -> None:
    a, b = replicas(), replicas()
    a.add(unit(1), [{}], embedder="embedder:v2")
    with pytest.raises(GalleryModelMismatch):
        b.add(unit(1, seed=1), [{}], embedder="embedder:v1")
    with pytest.raises(ValueError, match="16-d vectors for a gallery of 8-d"):
        b.add(unit(1, dim=16), [{}])
    a.clear()
    eventually(lambda: len(b) == 0 and b.embedder is None and b.dim is None)
    b.add(unit(1, dim=16), [{}], embedder="embedder:v1")  # an emptied gallery takes the next embedder
    eventually(lambda: a.embedder == "embedder:v1" and a.dim == 16)


def test_both_replicas_switch_to_hnsw_and_drop_removed_items(replicas: Callable[..., PostgresGallery]) -> None:
    params = IndexParams(hnsw_threshold=50, tombstone_fraction=0.5)
    a, b = replicas(params=params), replicas(params=params)
    vectors = unit(80, dim=16)
    a.add(vectors, [{"i": i} for i in range(80)], ids=[f"i{i}" for i in range(80)])
    eventually(lambda: len(b) == 80)
    assert (a.index_kind, b.index_kind) == ("hnsw", "hnsw")
    a.remove("i7")
    eventually(lambda: len(b) == 79)
    assert "i7" not in ids_found(b, vectors[7], 10)
    assert ids_found(b, vectors[8], 1) == ["i8"]


def test_catch_up_on_demand_applies_what_was_committed_elsewhere(
    url: str, replicas: Callable[..., PostgresGallery]
) -> None:
    b = replicas()
    with psycopg.connect(url) as conn:  # no NOTIFY, and b's periodic catch-up is a minute away
        conn.execute(
            "INSERT INTO gallery_item (id, vector, dim, meta, deleted, created_at) "
            "VALUES ('direct', %s, 8, '{\"k\": 1}', false, now())",
            (unit(1)[0].tobytes(),),
        )
    b.catch_up()
    assert len(b) == 1 and b.contains("direct")
    assert b.catch_up() == 0  # nothing new


def test_open_gallery_opens_the_postgres_store_when_configured(url: str) -> None:
    settings = ServingSettings(_env_file=None, gallery_backend="postgres", database_url=url, gallery_hnsw_threshold=9)  # type: ignore[call-arg]
    gallery = open_gallery(settings)
    try:
        assert isinstance(gallery, PostgresGallery) and gallery.params.hnsw_threshold == 9 and len(gallery) == 0
    finally:
        gallery.close()
