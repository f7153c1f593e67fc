"""Which migrations make ``hearth migrate`` rebuild the search index (``cli.migrate``)."""

from __future__ import annotations

import pytest

from hearth.cli.migrate import needs_reindex


@pytest.mark.parametrize(
    ("before", "after", "rebuild"),
    [
        ("0007", "0008", True),  # care relationships
        ("0010", "0011", True),  # combo-* searched as unions
        ("0011", "0012", True),  # name and address share their fields' keys
        ("0012", "0013", True),  # literal references without "has a value" keys
        ("0008", "0010", False),
        ("0013", "0013", False),
        ("0013", "0014", False),  # PostgreSQL's statistics target: no index change
        (None, "0013", False),  # a new database has nothing to rebuild
    ],
)
def test_crossing_a_marked_migration_rebuilds_the_index(
    before: str | None, after: str, rebuild: bool
) -> None:
    assert needs_reindex(before, after) is rebuild
