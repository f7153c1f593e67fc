"""When SQLite's write-ahead log is copied into the database file: past ``WAL_CHECKPOINT_PAGES``,
not SQLite's default 1,000 pages (``hearth.storage.sql.engine``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from hearth.storage.sql.engine import WAL_CHECKPOINT_PAGES, WAL_SIZE_LIMIT, Database, open_database

MARKER = b"checkpoint-marker-5f1c"


def _write(db: Database, pages: int) -> None:
    """One transaction of the marker and about ``pages`` pages."""
    with db.write.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": MARKER.decode()})
        filler = [{"x": f"{i:010d}" * 400} for i in range(pages)]
        conn.execute(text("INSERT INTO t VALUES (:x)"), filler)


def test_the_log_is_copied_past_its_threshold_not_sqlites(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = open_database(f"sqlite:///{path}")
    try:
        # More pages than SQLite's own threshold (1,000): still only in the log.
        _write(db, pages=1_500)
        assert MARKER in (tmp_path / "c.db-wal").read_bytes()
        assert MARKER not in path.read_bytes()
        # Past Hearth's threshold the committing writer copies the log into the file.
        _write(db, pages=WAL_CHECKPOINT_PAGES)
        assert MARKER in path.read_bytes()
    finally:
        db.dispose()


def test_the_log_file_is_cut_back_when_it_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = open_database(f"sqlite:///{path}")
    try:
        _write(db, pages=WAL_CHECKPOINT_PAGES + 100)  # a log longer than the limit, then copied
        _write(db, pages=1)  # starts the log over, and cuts the file back
        assert (tmp_path / "s.db-wal").stat().st_size <= WAL_SIZE_LIMIT
    finally:
        db.dispose()
