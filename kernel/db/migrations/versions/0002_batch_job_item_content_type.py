"""The content type a client declared for each batch-job image (checked when the worker decodes it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_job_item") as batch:
        batch.add_column(sa.Column("content_type", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_job_item") as batch:
        batch.drop_column("content_type")
