"""The audit table: predictions, rejections and heatmaps shown, with the model version that gave them.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("interface", sa.String(16), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("app_version", sa.String(32), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("predicted_class", sa.String(32), nullable=True),
        sa.Column("ood", sa.String(16), nullable=True),
        sa.Column("ood_distance", sa.Float(), nullable=True),
        sa.Column("lung_field_plausible", sa.Boolean(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("heatmap_method", sa.String(32), nullable=True),
        sa.Column("heatmap_class", sa.String(32), nullable=True),
        sa.Column("lung_energy", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    for column in ("created_at", "kind", "interface", "input_sha256", "model_sha256", "predicted_class"):
        op.create_index(f"ix_audit_records_{column}", "audit_records", [column])


def downgrade() -> None:
    op.drop_table("audit_records")
