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


def test_the_log_file_keeps_its_usual_size_and_is_cut_back_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    wal = tmp_path / "s.db-wal"
    db = open_database(f"sqlite:///{path}")
    try:
        # A log of the usual size at a checkpoint is reused as it is when it starts over: cutting
        # it back would only have the next writes grow it again.
        _write(db, pages=WAL_CHECKPOINT_PAGES + 100)
        _write(db, pages=1)  # starts the log over
        usual = wal.stat().st_size
        assert WAL_CHECKPOINT_PAGES * 4096 < usual <= WAL_SIZE_LIMIT
        # A far longer run (a rebuild of the index) is cut back to the limit when it starts over.
        _write(db, pages=WAL_SIZE_LIMIT // 4096 + 100)
        assert wal.stat().st_size > WAL_SIZE_LIMIT
        _write(db, pages=1)
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        db.dispose()
