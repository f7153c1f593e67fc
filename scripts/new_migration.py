"""Autogenerate an Alembic migration from ``hearth.storage.sql.tables`` (developers only).

Usage: python scripts/new_migration.py "what changed" REV_ID
It compares the tables against an empty SQLite database migrated to the current head.
"""

from __future__ import annotations

import sys
import tempfile

from alembic import command

from hearth.storage.sql import migrate
from hearth.storage.sql.engine import open_database


def main() -> None:
    message, rev_id = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/schema.db")
        migrate.upgrade(db)
        config = migrate._config()
        with db.write.begin() as conn:
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        db.dispose()


if __name__ == "__main__":
    main()
