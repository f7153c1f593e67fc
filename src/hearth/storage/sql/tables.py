"""The schema, in SQLAlchemy Core. Migrations in ``migrations/`` create exactly this.

Columns hold no plaintext PHI. The clear columns, and why each is safe, are listed in
docs/design.md ("What the database holds in the clear").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

__all__ = [
    "api_token",
    "audit_checkpoint",
    "audit_entry",
    "audit_head",
    "counter",
    "crypto_key",
    "instance_meta",
    "metadata",
    "resource_current",
    "resource_version",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# MariaDB's BLOB holds 64 KiB; resource bodies and audit entries can be larger.
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Digest = LargeBinary(32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb")

instance_meta = Table(
    "instance_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
)

# Gap-free sequences: a row per sequence, incremented under a row lock inside the writing
# transaction, so a rolled-back write leaves no hole (autoincrement columns do).
counter = Table(
    "counter",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

crypto_key = Table(
    "crypto_key",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("purpose", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("wrapped", LargeBinary(128).with_variant(mysql.VARBINARY(128), "mysql", "mariadb")),
    Column("kek_id", String(32), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("rotated_us", BigInteger),
    Column("retired_us", BigInteger),
)

# Every version of every resource, immutable once written. ``seq`` is the global, gap-free
# version sequence that incremental backups and point-in-time restore follow.
resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("key_id", Integer),
    Column("body", Blob),
    Column("mac_key_id", Integer, nullable=False),
    Column("mac", Digest, nullable=False),
    UniqueConstraint("res_type", "res_id", "version"),
    Index(None, "res_type", "seq"),
    Index(None, "ts_us"),
    Index(None, "key_id"),
)

# The newest version of each resource: what read and search start from.
resource_current = Table(
    "resource_current",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("deleted", Boolean, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
)

# The audit chain. ``body`` is the canonical entry (see hearth.audit.entry); the other columns
# repeat fields of it for querying and are checked against it by ``hearth audit verify``.
audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("res_type", String(64)),
    Column("res_id", String(64)),
    Column("patient", String(64)),
    Column("detail_key_id", Integer),  # the data key that sealed this entry's detail, if any
    Column("body", Blob, nullable=False),
    Column("prev_hash", Digest, nullable=False),
    Column("hash", Digest, nullable=False),
    Index(None, "actor", "ts_us"),
    Index(None, "patient", "ts_us"),
    Index(None, "res_type", "res_id"),
    Index(None, "ts_us"),
    Index(None, "detail_key_id"),
)

# The signed head of the chain (one row), rewritten at every commit, so that removing entries
# from the end is detected; and periodic signed checkpoints that localise damage.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Digest, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("signature", LargeBinary(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb")),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("hash", Digest, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column(
        "signature",
        LargeBinary(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb"),
        nullable=False,
    ),
)

# Bootstrap bearer tokens (until full authentication replaces them): only a digest is stored.
api_token = Table(
    "api_token",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("subject", String(128), nullable=False),
    Column("roles", String(256), nullable=False),
    Column("digest", Digest, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger),
    Column("revoked_us", BigInteger),
    Column("label", String(128), nullable=False, default=""),
)
