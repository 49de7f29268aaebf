"""Readers' verdicts (site_verdicts), and the calibration each audit record was made under.

Revision ID: 0003_verdicts
Revises: 0002_user_identity
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_verdicts"
down_revision = "0002_user_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reader_class", sa.String(32), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("model_output", sa.String(32), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("calibration", sa.String(120), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
    )
    for column in ("created_at", "input_sha256", "reader", "model_sha256"):
        op.create_index(f"ix_site_verdicts_{column}", "site_verdicts", [column])
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("calibration", sa.String(120), nullable=True))
        batch.add_column(sa.Column("temperature", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("temperature")
        batch.drop_column("calibration")
    op.drop_table("site_verdicts")
