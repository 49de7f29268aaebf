"""Sign-ins that outlive the server process (``sign_ins``): when each was last active and whether it ended, so
a restarted dashboard refuses the identity cookie of a sign-in that was signed out or timed out.

Revision ID: 0005_sign_ins
Revises: 0004_abstained
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sign_ins"
down_revision = "0004_abstained"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_ins",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.UniqueConstraint("issuer", "subject", "issued_at", name="uq_sign_ins_key"),
    )


def downgrade() -> None:
    op.drop_table("sign_ins")
