"""Drift detection: the features each inference-log row keeps, and the periodic check's results.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("inference_log") as batch:
        batch.add_column(sa.Column("features", JSON, nullable=True))
    op.create_index("ix_inference_log_model_created_at", "inference_log", ["model", "created_at"])
    op.create_table(
        "drift_check",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("tests", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_check")),
    )
    op.create_index("ix_drift_check_model_created_at", "drift_check", ["model", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_check_model_created_at", table_name="drift_check")
    op.drop_table("drift_check")
    op.drop_index("ix_inference_log_model_created_at", table_name="inference_log")
    with op.batch_alter_table("inference_log") as batch:
        batch.drop_column("features")
