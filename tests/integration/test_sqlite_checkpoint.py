"""When SQLite's write-ahead log is copied into the database file, and when its file is cut back
(``hearth.storage.sql.engine``): past ``WAL_CHECKPOINT_PAGES``, not SQLite's default 1,000
pages, and only when the log ran past ``WAL_SIZE_LIMIT``, which is above its size at a
checkpoint.

The behaviour is checked with both constants made small, so that the test writes megabytes
rather than the gigabyte the real ones would take; that every connection gets the real ones,
and how they relate, is checked on their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from hearth.storage.sql import engine
from hearth.storage.sql.engine import WAL_CHECKPOINT_PAGES, WAL_SIZE_LIMIT, Database, open_database

MARKER = b"checkpoint-marker-5f1c"
PAGE = 4096
FRAME = PAGE + 24  # a log frame: its header and one page


def _write(db: Database, pages: int) -> None:
    """One transaction of the marker and about ``pages`` pages."""
    with db.write.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": MARKER.decode()})
        filler = [{"x": f"{i:010d}" * 400} for i in range(pages)]
        conn.execute(text("INSERT INTO t VALUES (:x)"), filler)


def test_every_connection_gets_hearths_threshold_and_limit(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        for eng in (db.write, db.read):
            with eng.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
                    WAL_CHECKPOINT_PAGES
                )
                assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == (
                    WAL_SIZE_LIMIT
                )
    finally:
        db.dispose()
    # The log at a checkpoint, with a large transaction bundle's pages past the threshold
    # (about 1,900 at 1,100,000 versions), is not cut back when it starts over.
    assert (WAL_CHECKPOINT_PAGES + 4_000) * FRAME + 32 <= WAL_SIZE_LIMIT


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A threshold of 3,000 pages and a limit of 16 MiB (a log of 4,072 frames)."""
    monkeypatch.setattr(engine, "WAL_CHECKPOINT_PAGES", 3_000)
    monkeypatch.setattr(engine, "WAL_SIZE_LIMIT", 16 * 1024 * 1024)
    return 3_000, 16 * 1024 * 1024


def test_the_log_is_copied_past_its_threshold_not_sqlites(
    tmp_path: Path, small: tuple[int, int]
) -> None:
    threshold, _ = small
    path = tmp_path / "c.db"
    db = open_database(f"sqlite:///{path}")
    try:
        # More pages than SQLite's own threshold (1,000): still only in the log.
        _write(db, pages=1_500)
        assert MARKER in (tmp_path / "c.db-wal").read_bytes()
        assert MARKER not in path.read_bytes()
        # Past Hearth's threshold the committing writer copies the log into the file.
        _write(db, pages=threshold)
        assert MARKER in path.read_bytes()
    finally:
        db.dispose()


def test_the_log_file_keeps_its_usual_size_and_is_cut_back_past_the_limit(
    tmp_path: Path, small: tuple[int, int]
) -> None:
    threshold, limit = small
    path = tmp_path / "s.db"
    wal = tmp_path / "s.db-wal"
    db = open_database(f"sqlite:///{path}")
    try:
        # A log of the usual size at a checkpoint is reused as it is when it starts over:
        # cutting it back would only have the next writes grow it again.
        _write(db, pages=threshold + 100)
        _write(db, pages=1)  # starts the log over
        usual = wal.stat().st_size
        assert threshold * PAGE < usual <= limit
        # A far longer run (a rebuild of the index) is cut back to the limit when it starts over.
        _write(db, pages=limit // PAGE + 100)
        assert wal.stat().st_size > limit
        _write(db, pages=1)
        assert wal.stat().st_size <= limit
    finally:
        db.dispose()
