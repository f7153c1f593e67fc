"""``search_hash`` rows in bulk (hearth.storage.sql.search.insert_hashes): on SQLite they go in
multi-row statements of ``SQLITE_HASH_ROWS`` rows and then of powers of two; on the others,
through the driver's executemany. Every count, at and around the statement sizes, stores
exactly the rows asked for, and a duplicate row fails the whole transaction and stores none."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hearth.storage.sql import search as search_sql
from hearth.storage.sql import tables as t
from tests.support import Instance

pytestmark = pytest.mark.engines

SIZES = (
    1,
    2,
    3,
    137,
    search_sql.SQLITE_HASH_ROWS - 1,
    search_sql.SQLITE_HASH_ROWS,
    search_sql.SQLITE_HASH_ROWS + 1,
    8 * 137,
)


def rows(first_seq: int, counts: list[int]) -> list[search_sql.IndexRow]:
    return [
        search_sql.IndexRow(
            seq=first_seq + n,
            res_type="Patient",
            res_id=f"p{first_seq + n}",
            ts_us=0,
            hashes={os.urandom(16) for _ in range(count)},
        )
        for n, count in enumerate(counts)
    ]


def stored(instance: Instance) -> set[tuple[bytes, int]]:
    with instance.container.store.read() as conn:
        return {(bytes(h), int(s)) for h, s in conn.execute(select(t.search_hash))}


@pytest.mark.parametrize("total", SIZES)
def test_every_row_is_stored_once(instance: Instance, total: int) -> None:
    counts = [total] if total <= 137 else [137] * (total // 137) + [total % 137]
    written = rows(1, [c for c in counts if c])
    with instance.container.store.write() as conn:
        search_sql.insert_hashes(conn, written)
    expected = {(h, r.seq) for r in written for h in r.hashes}
    assert len(expected) == total
    assert stored(instance) == expected


def test_a_duplicate_row_stores_nothing(instance: Instance, engine: str) -> None:
    """A conflict inside one multi-row statement (a bug if it ever happened) leaves no row of
    the transaction behind. On SQLite, ``OR ROLLBACK`` has ended the transaction: the
    connection is invalidated, so no statement after it can run outside a transaction."""
    (row,) = rows(1, [300])
    # Its key comes first, and the same key of ``row`` is within the first 256 rows.
    duplicate = search_sql.IndexRow(
        seq=1, res_type="Patient", res_id="p1", ts_us=0, hashes={next(iter(row.hashes))}
    )
    invalidated: list[bool] = []
    with pytest.raises(IntegrityError), instance.container.store.db.write.begin() as conn:
        try:
            search_sql.insert_hashes(conn, [duplicate, row])
        finally:
            invalidated.append(conn.invalidated)
    assert invalidated == [engine == "sqlite"]
    with instance.container.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.search_hash)).scalar() == 0
