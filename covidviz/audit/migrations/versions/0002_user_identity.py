"""Who: the signed-in user's OpenID Connect subject and issuer, or the operating-system user and host; and the
page or action an access event (sign-in, sign-out, session timeout, refusal) is about. Records written
before this revision keep nulls.

Revision ID: 0002_user_identity
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_user_identity"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (("user_sub", 255), ("user_issuer", 255), ("os_user", 255), ("host", 255), ("resource", 64))
INDEXED = ("user_sub", "os_user")


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        for name, width in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(width), nullable=True))
    for name in INDEXED:
        op.create_index(f"ix_audit_records_{name}", "audit_records", [name])


def downgrade() -> None:
    for name in INDEXED:
        op.drop_index(f"ix_audit_records_{name}", "audit_records")
    with op.batch_alter_table("audit_records") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
