"""audit chain pins resource versions

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_audit_entry_res_type_res_id"))
        batch_op.create_index(
            batch_op.f("ix_audit_entry_res_type_res_id_version"),
            ["res_type", "res_id", "version"],
            unique=False,
        )

    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("version_seq", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("version_seq")

    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entry_res_type_res_id_version"))
        batch_op.create_index(
            batch_op.f("ix_audit_entry_res_type_res_id"), ["res_type", "res_id"], unique=False
        )
        batch_op.drop_column("version")
