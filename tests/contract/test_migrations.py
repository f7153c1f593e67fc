"""The migrations are the schema: one head, and on every engine they build exactly tables.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hearth.storage.sql import migrate
from hearth.storage.sql.engine import open_database
from hearth.storage.sql.tables import metadata

pytestmark = pytest.mark.engines


def test_there_is_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(migrate._config()).get_heads()
    assert len(heads) == 1, heads


def test_the_head_read_from_file_names_is_alembics() -> None:
    """``head_revision`` reads the folder without Alembic: every script must be named after its
    revision, each revising the one before, so the newest name is the head."""
    scripts = ScriptDirectory.from_config(migrate._config())
    assert migrate.head_revision() == scripts.get_current_head()
    revisions = list(scripts.walk_revisions())
    assert revisions
    for script in revisions:
        name = Path(script.path).name
        match = migrate.MIGRATION_NAME.fullmatch(name)
        assert match is not None, name
        assert script.revision == match["revision"], name
        expected = None if script.revision == "0001" else f"{int(script.revision) - 1:04d}"
        assert script.down_revision == expected, name


def test_current_revision_reads_what_alembic_recorded(
    database_url: str | None, tmp_path: Path
) -> None:
    db = open_database(database_url or f"sqlite:///{tmp_path / 'revision.db'}")
    try:
        assert migrate.current_revision(db) is None
        migrate.upgrade(db, "0001")
        assert migrate.current_revision(db) == "0001"
        migrate.upgrade(db)
        with db.read.connect() as conn:
            recorded = MigrationContext.configure(conn).get_current_revision()
        assert migrate.current_revision(db) == recorded == migrate.head_revision()
    finally:
        db.dispose()


def test_migrations_build_the_declared_schema(database_url: str | None, tmp_path: Path) -> None:
    db = open_database(database_url or f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        migrate.upgrade(db)
        with db.write.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            differences = compare_metadata(context, metadata)
        assert differences == []
    finally:
        db.dispose()


def test_postgresql_samples_more_of_the_blind_keys(
    engine: str, database_url: str | None, tmp_path: Path
) -> None:
    """Migration 0014: ``search_hash.hash`` has a statistics target of 1,000 on PostgreSQL, and
    going back to 0013 gives the default again."""
    if engine != "postgresql":
        pytest.skip("statistics targets are PostgreSQL's")
    db = open_database(database_url or f"sqlite:///{tmp_path / 'stats.db'}")
    target = (
        "SELECT attstattarget FROM pg_attribute "
        "WHERE attrelid = 'search_hash'::regclass AND attname = 'hash'"
    )
    try:
        migrate.upgrade(db)
        with db.read.connect() as conn:
            assert conn.exec_driver_sql(target).scalar_one() == 1000
        config = migrate._config()
        with db.write.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0013")
        assert migrate.current_revision(db) == "0013"
        with db.read.connect() as conn:
            assert conn.exec_driver_sql(target).scalar_one() in (-1, None)
    finally:
        db.dispose()
