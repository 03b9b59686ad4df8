"""A/B experiments (services/experiments): the experiment and feedback tables, and the log's experiment and arm.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("inference_log") as batch:
        batch.add_column(sa.Column("experiment", sa.String(64), nullable=True))
        batch.add_column(sa.Column("arm", sa.String(64), nullable=True))
        batch.create_index(batch.f("ix_inference_log_experiment"), ["experiment"])
    op.create_table(
        "experiment",
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("arms", JSON, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_at", TIMESTAMP, nullable=True),
        sa.Column("end_at", TIMESTAMP, nullable=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
    )
    op.create_index(op.f("ix_experiment_model"), "experiment", ["model"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("experiment", sa.String(64), nullable=True),
        sa.Column("arm", sa.String(64), nullable=True),
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("request_id", "item_index", name=op.f("uq_feedback_request_id_item_index")),
    )
    op.create_index(op.f("ix_feedback_experiment"), "feedback", ["experiment"])


def downgrade() -> None:
    op.drop_index(op.f("ix_feedback_experiment"), table_name="feedback")
    op.drop_table("feedback")
    op.drop_index(op.f("ix_experiment_model"), table_name="experiment")
    op.drop_table("experiment")
    with op.batch_alter_table("inference_log") as batch:
        batch.drop_index(batch.f("ix_inference_log_experiment"))
        batch.drop_column("arm")
        batch.drop_column("experiment")
