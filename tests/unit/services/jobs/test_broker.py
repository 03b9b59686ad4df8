"""The local broker: kombu's SQLAlchemy transport with acknowledgements and a visibility timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from kombu import Connection

from services.jobs import broker

OPTIONS = {"visibility_timeout": 0.5, "polling_interval": 0.05}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"{broker.ALIAS}+sqlite:///{tmp_path / 'broker.sqlite3'}"


@pytest.fixture
def rows(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'broker.sqlite3'}")
    yield engine
    engine.dispose()


def stored(engine: sa.Engine) -> list[tuple[int, bool]]:
    with engine.connect() as connection:
        return [(r[0], bool(r[1])) for r in connection.execute(sa.text("SELECT id, visible FROM kombu_message"))]


def test_an_acknowledged_message_is_deleted(url: str, rows: sa.Engine) -> None:
    with Connection(url, transport_options=OPTIONS) as connection:
        queue = connection.SimpleQueue("q")
        queue.put({"n": 1})
        message = queue.get(timeout=2)
        assert message.payload == {"n": 1}
        assert stored(rows) == [(1, False)]
        message.ack()
        assert stored(rows) == []


def test_a_message_held_by_a_dead_consumer_comes_back_after_the_visibility_timeout(url: str) -> None:
    with Connection(url, transport_options=OPTIONS) as first, Connection(url, transport_options=OPTIONS) as second:
        first.SimpleQueue("q").put({"n": 1})
        held = first.SimpleQueue("q").get(timeout=2)
        first.default_channel.qos.restore_at_shutdown = False  # as if killed: nothing is put back
        queue = second.SimpleQueue("q")
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)
        time.sleep(0.5)
        again = queue.get(timeout=2)
        assert again.payload == {"n": 1} and again.delivery_tag == held.delivery_tag
        again.ack()


def test_a_requeued_message_is_delivered_again_once(url: str, rows: sa.Engine) -> None:
    with Connection(url, transport_options=OPTIONS) as connection:
        queue = connection.SimpleQueue("q")
        queue.put({"n": 1})
        queue.get(timeout=2).requeue()
        assert [visible for _, visible in stored(rows)] == [True]
        queue.get(timeout=2).reject()  # dropped for good
        assert stored(rows) == []


def test_unacknowledged_messages_go_back_at_a_clean_close(url: str, rows: sa.Engine) -> None:
    with Connection(url, transport_options=OPTIONS) as connection:
        queue = connection.SimpleQueue("q")
        queue.put({"n": 1})
        queue.get(timeout=2)
    assert [visible for _, visible in stored(rows)] == [True]


def test_the_alias_is_registered() -> None:
    from kombu.transport import TRANSPORT_ALIASES

    assert TRANSPORT_ALIASES[broker.ALIAS] == "services.jobs.broker:Transport"
