"""Engines for the three supported databases, configured for durability and for Hearth's locks.

SQLite runs in WAL mode with ``synchronous=FULL`` (every commit is fsynced) and write
transactions begin with ``BEGIN IMMEDIATE``, so a writer takes the write lock up front instead of
failing to upgrade a read lock halfway through. Reads use a separate pool of connections in
autocommit mode (each statement is its own snapshot) and never block the writer in WAL mode.
A writer copies the write-ahead log into the database file (a checkpoint) once the log holds
``WAL_CHECKPOINT_PAGES`` pages, fifty times SQLite's default (see there).

PostgreSQL runs through psycopg 3; MariaDB/MySQL through PyMySQL with ``utf8mb4`` and
``READ COMMITTED``. On both, writers serialise on the row lock of the gap-free counter they must
increment (see ``store.SqlStore.next_seq``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from hearth.domain import HearthError, errors

__all__ = ["Database", "check_reachable", "normalise_url", "open_database"]

#: Pages in SQLite's write-ahead log after which the committing writer copies them into the
#: database file (a log of about 197 MiB at 4 KiB pages; SQLite's default is 1,000). Hearth's
#: writes dirty pages all over the blind index (a keyed hash lands anywhere in
#: ``search_hash``): at 1,000 a transaction bundle passed the threshold on its own, and every
#: checkpoint ends with an fsync of the database file while the next writer waits. At 50,000 a
#: checkpoint comes a fifth as often as at 10,000, and transaction bundles at 1,100,000 versions
#: were 13 to 22% faster (docs/benchmarks.md, "Checkpoints a fifth as often").
WAL_CHECKPOINT_PAGES = 50_000
#: The size the log file is cut back to when it starts over (SQLite reuses it without truncating
#: it, so it would otherwise keep the size of its longest run): above the log's usual size at a
#: checkpoint, so that only a run far longer than usual (a rebuild of the index) is cut back.
#: Cut back at every checkpoint, the log file had to be grown again by the writes after it:
#: bundles were 5 to 6% slower so, probably for the file system's allocating the blocks again.
WAL_SIZE_LIMIT = 256 * 1024 * 1024


def normalise_url(url: str) -> URL:
    """Pin each engine's driver: ``postgresql://`` means psycopg 3, ``mariadb://`` PyMySQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend in {"mysql", "mariadb"}:
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        return parsed.set(drivername=f"{backend}+pymysql", query=query)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    raise HearthError(errors.BAD_PARAMETER, "Supported databases: sqlite, postgresql, mariadb.")


@dataclass(frozen=True, slots=True)
class Database:
    """A pair of engines: ``write`` for transactions that change data, ``read`` for the rest."""

    url: URL
    write: Engine
    read: Engine
    # SQLite writers of one process queue here rather than in SQLite's busy handler, which
    # polls with sleeps of up to 100 ms and leaves the lock idle between polls. Other
    # processes (a CLI command beside ``hearth serve``) still meet the busy timeout.
    writer_mutex: threading.Lock | None = field(default=None, compare=False)

    @property
    def dialect(self) -> str:
        return self.write.dialect.name

    def reads_busy(self) -> bool:
        """Whether every pooled read connection is taken (the next read may wait for one)."""
        pool = self.read.pool
        return isinstance(pool, QueuePool) and pool.checkedout() >= pool.size()

    def dispose(self) -> None:
        self.write.dispose()
        if self.read is not self.write:
            self.read.dispose()


def _sqlite_engine(url: URL, *, begin: str | None, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own transaction
        # handling would otherwise start transactions lazily and deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Both only act for writers (a commit, a log that starts over); set on every connection.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    return engine


def _private_file(path: Path) -> None:
    """Create a new SQLite database file as the instance's own: folders 0700, file 0600 (SQLite
    gives its -wal and -shm files the database file's mode). An existing file is left as is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def open_database(url: str, *, pool_size: int = 16) -> Database:
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
        write = _sqlite_engine(parsed, begin="BEGIN IMMEDIATE", pool_size=2)
        # Reads run in autocommit: each statement sees one consistent snapshot on its own, and
        # skipping BEGIN/COMMIT round trips matters on the hottest path. Reads that need several
        # statements in one snapshot use ``SqlStore.snapshot``, which begins a deferred transaction.
        read = _sqlite_engine(parsed, begin=None, pool_size=pool_size)
        return Database(parsed, write, read, writer_mutex=threading.Lock())
    options: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
    if backend in {"mysql", "mariadb"}:
        options["isolation_level"] = "READ COMMITTED"
        options["pool_recycle"] = 3600
    engine = create_engine(parsed, pool_pre_ping=True, **options)
    return Database(parsed, engine, engine)


def check_reachable(db: Database) -> None:
    """Connect once; a database that does not answer is ``STORAGE_UNAVAILABLE`` naming where it
    was looked for (never the password), instead of a driver error."""
    try:
        with db.write.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        url = db.url
        server = f"{url.host or 'localhost'}:{url.port or 'its default port'}"
        where = (
            f"the SQLite file {url.database}"
            if url.get_backend_name() == "sqlite"
            else f"{url.get_backend_name()} at {server}, database {url.database or '(none)'}, "
            f"user {url.username or '(none)'}"
        )
        raise HearthError(
            errors.STORAGE_UNAVAILABLE,
            f"Cannot connect to {where} ({type(exc.orig).__name__}): check that the server "
            "runs, the database exists and the user may connect.",
        ) from None
