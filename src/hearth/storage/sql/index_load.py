"""Bulk loading of the search index tables into an empty index (a restore's rebuild).

The rows are those ``search.insert_index`` writes on every resource write; what differs is how
the engine receives them. ``search_hash`` holds dozens of blind keys per resource, and its
primary key ``(hash, seq)`` is random in every resource's order: inserted as the versions come,
each row lands on a random page of a b-tree that soon outgrows the engine's cache (at 220,000
versions, 11 million rows). So:

- **SQLite** (``search_hash`` is a ``WITHOUT ROWID`` table: its primary key is the table): the
  keys are appended to a temporary staging table and moved into ``search_hash`` at the end by
  one ``INSERT ... SELECT ... ORDER BY hash, seq``, so the engine sorts them (its sorter spills
  to temporary files: memory stays bounded) and fills the b-tree in key order.
- **PostgreSQL**: the primary key of ``search_hash`` is dropped at the start, the keys are
  streamed in with ``COPY`` (psycopg's ``executemany`` sends one bind and execute per row), and
  the key is added back at the end, which builds its b-tree from one sort.
- On both, the secondary indexes of the index tables are dropped at the start and created
  again at the end, each built from one sort of the finished table instead of maintained row
  by row. Both engines' DDL is part of the transaction, so all of this happens inside the
  caller's one transaction and a failure rolls it back with everything else; the key and the
  indexes are back before the transaction commits, so nothing is ever committed without them.
- **MariaDB** commits implicitly on ``DROP INDEX``, which would break a restore's one
  transaction, and its buffer pool absorbed the random inserts better than a staging pass in
  the benchmark: there the rows go in as on a write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Index, MetaData, Table
from sqlalchemy.schema import AddConstraint, DropConstraint

from hearth.storage.sql import search as search_sql
from hearth.storage.sql import tables as t

__all__ = ["IndexBulkLoad"]

#: Every table ``insert_index`` writes.
INDEX_TABLES = (
    t.search_resource,
    t.search_hash,
    t.search_reference,
    t.search_compartment,
    t.search_care_link,
)
#: Engines whose DDL is part of the transaction (rolled back with it): the bulk path.
TRANSACTIONAL_DDL = frozenset({"sqlite", "postgresql"})

_STAGE = Table(
    "hearth_stage_search_hash",
    MetaData(),
    Column("hash", t.BlindKey, nullable=False),
    Column("seq", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)


class IndexBulkLoad:
    """Fills EMPTY index tables inside the caller's transaction: ``start``, ``add`` batches in
    ``seq`` order, ``finish``; the transaction must not commit between ``start`` and
    ``finish`` (the tables lack their indexes in between)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.engine = conn.dialect.name
        self.bulk = self.engine in TRANSACTIONAL_DDL
        self._deferred: list[Index] = []

    def start(self) -> None:
        if not self.bulk:
            return
        if self.engine == "postgresql":
            # The key and index builds sort in memory up to these sizes (the server's memory,
            # not this process's), for this transaction only.
            self.conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        for table in INDEX_TABLES:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                index.drop(self.conn)
                self._deferred.append(index)
        if self.engine == "postgresql":
            self.conn.execute(DropConstraint(t.search_hash.primary_key))
        else:
            _STAGE.create(self.conn)

    def add(self, rows: Sequence[search_sql.IndexRow]) -> None:
        """Every table but ``search_hash`` directly: their keys start with ``seq``, which rises
        from batch to batch, or they hold about one row per resource. The keys to staging
        (SQLite) or, without the primary key yet, straight into ``search_hash`` (PostgreSQL)."""
        if not self.bulk:
            search_sql.insert_index(self.conn, rows)
            return
        search_sql.insert_index(self.conn, rows, hashes=False)
        hashes = [(h, r.seq) for r in rows for h in r.hashes]
        if not hashes:
            return
        if self.engine == "postgresql":
            self._copy(hashes)
        else:
            self.conn.exec_driver_sql(
                f"INSERT INTO {_STAGE.name} (hash, seq) VALUES (?, ?)",  # noqa: S608
                hashes,
            )

    def _copy(self, hashes: list[tuple[bytes, int]]) -> None:
        """``COPY`` in binary on the transaction's own connection (psycopg 3)."""
        driver: Any = self.conn.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy("COPY search_hash (hash, seq) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["bytea", "int8"])
            for row in hashes:
                copy.write_row(row)

    def finish(self) -> None:
        if not self.bulk:
            return
        if self.engine == "postgresql":
            # isolate_from_table=False: by default SQLAlchemy marks the constraint as one that
            # CREATE TABLE must leave out, for the rest of the process, and a later
            # ``metadata.create_all`` made ``search_hash`` without its primary key.
            self.conn.execute(AddConstraint(t.search_hash.primary_key, isolate_from_table=False))
        else:
            self.conn.exec_driver_sql(
                "INSERT INTO search_hash (hash, seq) "  # noqa: S608 - fixed names only
                f"SELECT hash, seq FROM {_STAGE.name} ORDER BY hash, seq"
            )
            self.conn.exec_driver_sql(f"DROP TABLE {_STAGE.name}")
        for index in self._deferred:
            index.create(self.conn)
        self._deferred = []
