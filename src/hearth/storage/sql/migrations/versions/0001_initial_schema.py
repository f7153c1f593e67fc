"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("roles", sa.String(length=256), nullable=False),
        sa.Column(
            "digest",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_us", sa.BigInteger(), nullable=True),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_token")),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column(
            "hash",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column(
            "signature",
            sa.LargeBinary(length=64)
            .with_variant(sa.VARBINARY(length=64), "mariadb")
            .with_variant(sa.VARBINARY(length=64), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoint")),
    )
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=True),
        sa.Column("res_id", sa.String(length=64), nullable=True),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("detail_key_id", sa.Integer(), nullable=True),
        sa.Column(
            "body",
            sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "prev_hash",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "hash",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entry")),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_entry_actor_ts_us"), ["actor", "ts_us"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_entry_detail_key_id"), ["detail_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_entry_patient_ts_us"), ["patient", "ts_us"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_entry_res_type_res_id"), ["res_type", "res_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_entry_ts_us"), ["ts_us"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "hash",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column(
            "signature",
            sa.LargeBinary(length=64)
            .with_variant(sa.VARBINARY(length=64), "mariadb")
            .with_variant(sa.VARBINARY(length=64), "mysql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "counter",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counter")),
    )
    op.create_table(
        "crypto_key",
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "wrapped",
            sa.LargeBinary(length=128)
            .with_variant(sa.VARBINARY(length=128), "mariadb")
            .with_variant(sa.VARBINARY(length=128), "mysql"),
            nullable=True,
        ),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("rotated_us", sa.BigInteger(), nullable=True),
        sa.Column("retired_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_crypto_key")),
    )
    op.create_table(
        "instance_meta",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instance_meta")),
    )
    op.create_table(
        "resource_current",
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("res_type", "res_id", name=op.f("pk_resource_current")),
        sa.UniqueConstraint("seq", name=op.f("uq_resource_current_seq")),
    )
    op.create_table(
        "resource_version",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column(
            "body",
            sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=True,
        ),
        sa.Column("mac_key_id", sa.Integer(), nullable=False),
        sa.Column(
            "mac",
            sa.LargeBinary(length=32)
            .with_variant(sa.VARBINARY(length=32), "mariadb")
            .with_variant(sa.VARBINARY(length=32), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_resource_version")),
        sa.UniqueConstraint(
            "res_type",
            "res_id",
            "version",
            name=op.f("uq_resource_version_res_type_res_id_version"),
        ),
    )
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_version_key_id"), ["key_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resource_version_res_type_seq"), ["res_type", "seq"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_resource_version_ts_us"), ["ts_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_version_ts_us"))
        batch_op.drop_index(batch_op.f("ix_resource_version_res_type_seq"))
        batch_op.drop_index(batch_op.f("ix_resource_version_key_id"))

    op.drop_table("resource_version")
    op.drop_table("resource_current")
    op.drop_table("instance_meta")
    op.drop_table("crypto_key")
    op.drop_table("counter")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entry_ts_us"))
        batch_op.drop_index(batch_op.f("ix_audit_entry_res_type_res_id"))
        batch_op.drop_index(batch_op.f("ix_audit_entry_patient_ts_us"))
        batch_op.drop_index(batch_op.f("ix_audit_entry_detail_key_id"))
        batch_op.drop_index(batch_op.f("ix_audit_entry_actor_ts_us"))

    op.drop_table("audit_entry")
    op.drop_table("audit_checkpoint")
    op.drop_table("api_token")
