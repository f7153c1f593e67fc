"""Schema migrations with Alembic, run in-process (``hearth init`` and ``hearth migrate``)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hearth.storage.sql.engine import Database

__all__ = ["current_revision", "head_revision", "upgrade"]


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("hearth.storage.sql") / "migrations"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    config = _config()
    with db.write.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    with db.read.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
