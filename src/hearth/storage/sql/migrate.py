"""Schema migrations with Alembic, run in-process (``hearth init`` and ``hearth migrate``).

Every command checks the schema before it starts (``Container``): that check reads the
revision Alembic recorded and the newest migration's from the folder's file names, without
importing Alembic and the migration scripts, which only an upgrade needs (docs/design.md,
"Start-up").
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from hearth.domain import HearthError, errors
from hearth.storage.sql.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATION_NAME", "current_revision", "head_revision", "upgrade"]

#: A migration's file name: its revision (four digits, the previous one's plus one) and a slug.
MIGRATION_NAME = re.compile(r"(?P<revision>\d{4})_\w+\.py")


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("hearth.storage.sql") / "migrations"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    from alembic import command

    config = _config()
    with db.write.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    """The revision recorded in ``alembic_version``; None when there is none (no schema)."""
    with db.read.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = [
            str(v) for v in conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
        ]
    if len(found) > 1:
        raise HearthError(
            errors.STORAGE_UNAVAILABLE, "The database records several schema revisions."
        )
    return found[0] if found else None


def head_revision() -> str | None:
    """The newest migration's revision, read from the file names (``MIGRATION_NAME``): the
    migrations form one chain, each revising the one before (a test checks this, and this
    function, against Alembic's own reading of the scripts)."""
    versions = files("hearth.storage.sql") / "migrations" / "versions"
    found = [
        match["revision"]
        for entry in versions.iterdir()
        if (match := MIGRATION_NAME.fullmatch(entry.name)) is not None
    ]
    return max(found, default=None)
