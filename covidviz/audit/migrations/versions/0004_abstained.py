"""Why the model gave no class for an input (out of distribution, no plausible lungs): ``abstained``.

Revision ID: 0004_abstained
Revises: 0003_verdicts
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_abstained"
down_revision = "0003_verdicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("abstained", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("abstained")
