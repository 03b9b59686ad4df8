"""The no-server broker of local mode: kombu's SQLAlchemy transport, with acknowledgements and a visibility timeout.

kombu's own SQLAlchemy transport marks a message invisible when it hands it to a consumer and never
looks at it again: an acknowledgement deletes nothing, and a message held by a worker that is
killed is lost for good (so are kombu's filesystem transport's). This one deletes a message when it
is acknowledged (or dropped), and a message delivered but neither acknowledged nor rejected for
``visibility_timeout`` seconds becomes visible again, as with kombu's Redis transport. So late
acknowledgement means the same thing on both brokers: work held by a worker that dies is delivered
again, to the next worker that polls.

URL: ``cvsql+<any SQLAlchemy URL>``, e.g. ``cvsql+sqlite:////abs/path/broker.sqlite3``. Transport
options: ``visibility_timeout`` (seconds, default 300), ``polling_interval`` (seconds); the rest
go to ``sqlalchemy.create_engine``. docs/adr/0005-job-broker.md has the choice and its limits.
"""

from __future__ import annotations

import datetime
import threading
from json import loads
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, delete, event, text, update

ALIAS = "cvsql"
# Transport options that are ours or kombu's, not create_engine's.
_NOT_ENGINE_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "visibility_timeout",
        "polling_interval",
    }
)


class Channel(kombu_sqla.Channel):
    """Delivers like kombu's SQLAlchemy channel; remembers which row each delivery came from."""

    visibility_timeout = 300.0

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self.visibility_timeout = float(options.get("visibility_timeout", self.visibility_timeout))
        self._rows: dict[str, int] = {}  # delivery tag -> message row, for the deliveries of this channel
        self._rows_lock = threading.Lock()  # acknowledgements may come from other threads than the consumer's
        super().__init__(connection, **kwargs)

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in _NOT_ENGINE_OPTIONS}
        if not conninfo.hostname.startswith("sqlite"):
            return create_engine(conninfo.hostname, **options)
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(conninfo.hostname, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        obj = self._get_or_create(queue)
        session = self.session
        table = self.message_cls.__table__
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            # kombu stamps `timestamp` with datetime.now() (naive, local) whenever a row changes, so for an
            # invisible row it is the time of its delivery.
            cutoff = datetime.datetime.now() - datetime.timedelta(seconds=self.visibility_timeout)
            session.execute(
                update(table)
                .where(table.c.queue_id == obj.id, table.c.visible.is_(False), table.c.timestamp < cutoff)
                .values(visible=True, timestamp=datetime.datetime.now())
            )
            message = (
                session.query(self.message_cls)
                .with_for_update()
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_(True))
                .order_by(self.message_cls.sent_at)
                .order_by(self.message_cls.id)
                .limit(1)
                .first()
            )
            if message is None:
                raise Empty()
            message.visible = False
            message.sent_at = datetime.datetime.now()
            payload: dict[str, Any] = loads(bytes_to_str(message.payload))
            with self._rows_lock:
                self._rows[payload["properties"]["delivery_tag"]] = message.id
            return payload
        finally:
            session.commit()

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._drop(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)  # with requeue, kombu puts a copy back (_restore)
        self._drop(delivery_tag)

    def _restore(self, message: Any) -> None:
        # A requeue, or the unacknowledged messages of a clean shutdown: the copy first, then the delivered row,
        # so a crash in between repeats a message rather than losing it.
        super()._restore(message)
        self._drop(message.delivery_tag)

    def _drop(self, delivery_tag: str) -> None:
        with self._rows_lock:
            row = self._rows.pop(delivery_tag, None)
        if row is None:
            return
        engine, _ = self._open()
        table = self.message_cls.__table__
        with engine.begin() as connection:
            connection.execute(delete(table).where(table.c.id == row))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the api publishing and the workers polling do not block each other; NORMAL: a commit survives the
    # process (the case that matters: a killed worker), not a power cut, at a fraction of the fsyncs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Transport(kombu_sqla.Transport):
    Channel = Channel
    driver_name = "sqlalchemy-acked"


def register() -> None:
    """Make ``cvsql+...`` URLs resolve to this transport (in every process that publishes or consumes)."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")


register()
