"""A literal reference says its parameter has a value by its row alone (no schema change)

Revision ID: 0013
Revises: 0012

The schema does not change. Index rows are derived data, and from this revision a reference
parameter whose values are all literal references (``Type/id``) has no "has a value" key: its
rows in ``search_reference`` say it (``hearth.fhir.search.index.index_resource``,
``hearth.fhir.search.criteria._present``). Keys an older Hearth wrote are still read, so searches
give the same results; the integrity scanner would report them stale, so ``hearth migrate``
rebuilds the search index when it crosses this revision (``cli.migrate``).
"""

from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
