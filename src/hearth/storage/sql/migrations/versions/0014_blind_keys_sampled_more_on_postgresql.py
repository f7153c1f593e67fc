"""PostgreSQL samples more of the blind keys when it gathers statistics

Revision ID: 0014
Revises: 0013

``search_hash.hash`` holds tens of millions of keyed hashes, and how many rows share one is
heavy-tailed: a status or a code is shared by every resource that has it, a long name prefix by
a few. With the default statistics target (100, a sample of 30,000 rows), PostgreSQL estimated
7,659 distinct keys where there were 273,953 (100,000 patients and 1,000,000 observations:
31.6 million rows). It then expected the three keys of a name search to match 4,828 rows where
they matched 543, and counted them by reading every Patient's row of ``search_resource`` (19 ms)
instead of looking each one up (2 ms). The column's target is raised to 1,000 (a
sample of 300,000 rows; ``ANALYZE`` of that table took 2.3 s instead of under one), and the
table is analysed now so that an upgraded database plans with it at once (``hearth migrate``
and ``hearth reindex`` analyse the index tables again after a rebuild). Nothing changes on
SQLite and MariaDB, whose planners do not estimate from a sample of values (docs/design.md,
"Blind keys").
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: The statistics target of ``search_hash.hash`` on PostgreSQL (its default is 100).
HASH_STATISTICS = 1000


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE search_hash ALTER COLUMN hash SET STATISTICS {HASH_STATISTICS}")
    op.execute("ANALYZE search_hash")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE search_hash ALTER COLUMN hash SET STATISTICS -1")
