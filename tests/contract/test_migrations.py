"""The migrations are the schema: one head, and on every engine they build exactly tables.py."""

from __future__ import annotations

from pathlib import Path

import pytest
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
