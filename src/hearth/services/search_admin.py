"""Maintenance of the search indexes (docs/design.md, "Search indexes")."""

from __future__ import annotations

from hearth.services.progress import NullProgress, Progress
from hearth.storage import SystemRepository

__all__ = ["rebuild_search_index"]


def rebuild_search_index(system: SystemRepository, progress: Progress | None = None) -> int:
    """Rebuild the index tables from the sealed current versions; returns resources indexed."""
    progress = progress or NullProgress()
    progress.start("Reindexing", None)
    try:
        return system.reindex(on_row=lambda _seq: progress.advance())
    finally:
        progress.finish()
