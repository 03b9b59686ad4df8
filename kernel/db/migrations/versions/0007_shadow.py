"""Shadow traffic (services/shadow/): inference-log rows of a shadow version's answers, and their agreement.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inference_log") as batch:
        batch.add_column(sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("agreement", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inference_log") as batch:
        batch.drop_column("agreement")
        batch.drop_column("shadow")
