"""The gallery store of this process, chosen once from the settings (docs/adr/0012-gallery-in-postgresql.md)."""

from __future__ import annotations

from services.config import ServingSettings
from services.index.gallery import GalleryIndex
from services.index.postgres import PostgresGallery
from services.index.vectors import IndexParams


def index_params(settings: ServingSettings) -> IndexParams:
    """When the in-memory index switches to HNSW, and its graph parameters."""
    return IndexParams(
        hnsw_threshold=settings.gallery_hnsw_threshold,
        hnsw_m=settings.gallery_hnsw_m,
        ef_construction=settings.gallery_hnsw_ef_construction,
        ef_search=settings.gallery_hnsw_ef_search,
        tombstone_fraction=settings.gallery_tombstone_fraction,
    )


def open_gallery(settings: ServingSettings) -> GalleryIndex | PostgresGallery:
    """The SQLite file under ``data_dir`` (local mode), or the shared PostgreSQL table (``gallery_store``)."""
    if settings.gallery_store == "postgres" and settings.database_url:
        return PostgresGallery(
            settings.database_url,
            settings.gallery_dim,
            index_params(settings),
            catchup_interval_s=settings.gallery_catchup_interval_s,
            connect_timeout_s=settings.db_connect_timeout_s,
        )
    return GalleryIndex(settings.gallery_path, settings.gallery_dim, index_params(settings))
