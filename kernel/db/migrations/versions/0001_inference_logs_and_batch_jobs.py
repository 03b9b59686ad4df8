"""Inference logs, batch jobs and their items.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def _indexes(table: str, *columns: str) -> None:
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.create_index(batch.f(f"ix_{table}_{column}"), [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "batch_job",
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("succeeded_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_job")),
    )
    _indexes("batch_job", "client_id", "created_at", "request_id", "status")

    op.create_table(
        "inference_log",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("precision", sa.String(16), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("top_label", sa.String(256), nullable=True),
        sa.Column("top_score", sa.Float(), nullable=True),
        sa.Column("box_count", sa.Integer(), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("image_bytes", sa.Integer(), nullable=True),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("image_format", sa.String(16), nullable=True),
        sa.Column("error_type", sa.String(64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("id", BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inference_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_inference_log_event_id")),
    )
    _indexes("inference_log", "client_id", "created_at", "image_sha256", "job_id", "request_id")

    op.create_table(
        "batch_job_item",
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(256), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("input_uri", sa.String(1024), nullable=True),
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["batch_job.id"], name=op.f("fk_batch_job_item_job_id_batch_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_job_item")),
        sa.UniqueConstraint("job_id", "item_index", name=op.f("uq_batch_job_item_job_id_item_index")),
    )
    _indexes("batch_job_item", "job_id")


def downgrade() -> None:
    op.drop_table("batch_job_item")
    op.drop_table("inference_log")
    op.drop_table("batch_job")
