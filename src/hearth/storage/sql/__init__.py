"""SQL storage: schema, engines, migrations and statements (SQLAlchemy Core)."""

from hearth.storage.sql.engine import Database, check_reachable, normalise_url, open_database
from hearth.storage.sql.store import SqlStore

__all__ = ["Database", "SqlStore", "check_reachable", "normalise_url", "open_database"]
