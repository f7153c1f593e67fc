"""Identifiers compared as written on MariaDB and MySQL

Revision ID: 0010
Revises: 0009

FHIR ids, resource types, references, user ids and every other key Hearth stores are
case-sensitive, and SQLite and PostgreSQL compare them byte for byte. MariaDB's default collation
(``utf8mb4_general_ci``) compared them without regard to case or accents: ``Patient/ABC`` read
``Patient/abc``, and a PUT to ``Patient/ABC`` wrote a new version of ``Patient/abc``. Every table
is converted to ``utf8mb4_bin``, and so is the database's default, so that tables created by
later migrations compare the same way. Nothing changes on SQLite and PostgreSQL.

A database that already holds two ids differing only in case cannot have them: its unique keys
refused the second, or it overwrote the first (above), so the conversion meets no duplicates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BINARY = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    op.execute(f"ALTER DATABASE {_BINARY}")
    for name in sorted(sa.inspect(bind).get_table_names()):
        op.execute(f"ALTER TABLE `{name}` CONVERT TO {_BINARY}")


def downgrade() -> None:
    # Left as it is: comparing without regard to case again would make ids that now differ
    # only in case name one resource.
    pass
