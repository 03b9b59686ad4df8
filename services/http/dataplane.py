"""The api's data plane: inference-log writer, result cache, shadow mirror and experiments, built once from settings.

The api service's composition root (services/api.py) builds one :class:`DataPlane`, wraps its
model client with :meth:`DataPlane.wrap` (result cache and inference-log recording; the shadow mirror
takes the raw client), and hands the plane to the app for health, logging and shadow copies.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from kernel.db import migrate
from kernel.db.session import create_db_engine
from services.cache import Cache, build_cache
from services.clients.base import AsyncModelClient
from services.config import ServingSettings
from services.db.spool import Spool
from services.db.writer import DatabaseSink, InferenceLogWriter
from services.experiments.snapshot import ExperimentBook
from services.http.caching import CachingClient
from services.http.recording import RecordingClient
from services.models.catalogue import MODEL_NAMES
from services.shadow.mirror import ShadowMirror

log = logging.getLogger(__name__)


class DataPlane:
    """Where inference logs go and where answers are cached."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        engine: Engine,
        log_writer: InferenceLogWriter,
        cache: Cache | None,
        experiments: ExperimentBook | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine  # the jobs share it
        self.log_writer = log_writer
        self.cache = cache
        self.mirror: ShadowMirror | None = None  # made by wrap() around the raw model client
        # The running A/B experiments, read from the same database every CV_EXPERIMENTS_REFRESH_S.
        self.experiments = experiments or ExperimentBook.from_engine(engine, refresh_s=settings.experiments_refresh_s)

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> DataPlane:
        """Connect (lazily), migrate when the settings say so, start the log writer, choose the cache."""
        engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
        if settings.migrate_on_start:
            try:
                migrate.upgrade(engine)
            except Exception as exc:  # serving goes on; logs spool until the database is back and migrated
                log.error("database migration at start-up failed", extra={"error": repr(exc)})
        writer = InferenceLogWriter(
            DatabaseSink(engine),
            Spool(settings.spool_dir),
            buffer_size=settings.log_buffer_size,
            flush_interval_s=settings.log_flush_interval_s,
            retry_interval_s=settings.reconnect_interval_s,
        )
        writer.start()
        cache = build_cache(settings) if settings.cache_enabled else None
        log.info(
            "data plane ready",
            extra={"database": engine.dialect.name, "cache": cache.name if cache is not None else "off"},
        )
        plane = cls(settings, engine=engine, log_writer=writer, cache=cache)
        # Read now, not by the first request: the first read configures SQLAlchemy's mappers (135 ms by py-spy on a
        # fresh api worker; the first classify answered in 160 ms, the next ones in 10). A failure keeps no snapshot
        # and the first request tries again, as before.
        plane.experiments.refresh()
        return plane

    def wrap(self, client: AsyncModelClient) -> RecordingClient:
        """The model client behind the result cache (when it is on), behind the inference log's recording.

        Recording is outside the cache, so a record says whether its answer came from the cache. With
        ``CV_SHADOW_ENABLED`` the shadow mirror calls ``client`` itself: its answers are never cached nor recorded
        as the caller's (docs/adr/0011-shadow-traffic.md).
        """
        if self.settings.shadow_enabled:
            self.mirror = ShadowMirror(
                client,
                self.log_writer,
                models=MODEL_NAMES,
                queue_size=self.settings.shadow_queue_size,
                queue_bytes=self.settings.shadow_queue_mb * 1024 * 1024,
                refresh_s=self.settings.shadow_refresh_s,
                concurrency=self.settings.shadow_concurrency,
                sample_rate=self.settings.shadow_sample_rate,
            )
        if self.cache is not None:
            client = CachingClient(
                client,
                self.cache,
                ttl_s=self.settings.cache_ttl_s,
                prefix=self.settings.cache_prefix,
                version_ttl_s=self.settings.cache_version_ttl_s,
            )
        return RecordingClient(client)

    async def health(self) -> dict[str, dict[str, Any]]:
        """``inference_log`` and ``cache``, each ``ok`` or ``degraded``."""
        parts = {"inference_log": self.log_writer.describe()}
        parts["cache"] = await self.cache.check() if self.cache is not None else {"status": "ok", "backend": "off"}
        return parts

    def start(self) -> None:
        """Start the shadow mirror's tasks on the running event loop (the api's start-up hook)."""
        if self.mirror is not None:
            self.mirror.start()

    async def close(self) -> None:
        """Stop the shadow mirror, flush the logs (to the spool if need be) and close the cache."""
        if self.mirror is not None:
            await self.mirror.close()
        self.log_writer.close()
        if self.cache is not None:
            await self.cache.close()
        self.engine.dispose()
