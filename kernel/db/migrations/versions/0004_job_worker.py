"""Batch-job workers' heartbeats (services/jobs/heartbeat.py), so health can say whether anyone works the queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_worker",
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("hostname", name=op.f("pk_job_worker")),
    )
    op.create_index(op.f("ix_job_worker_seen_at"), "job_worker", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_worker_seen_at"), table_name="job_worker")
    op.drop_table("job_worker")
