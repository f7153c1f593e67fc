"""name and address search parameters share their parts' index keys (no schema change)

Revision ID: 0012
Revises: 0011

The schema does not change. Index rows are derived data, and from this revision a string
parameter over a HumanName or an Address (``name``, ``address``) has keys of its own only for the
fields no other parameter indexes (``hearth.fhir.search.extract._element_unions``): ``family``,
``given``, ``address-city`` and the like hold the rest. Rows an older Hearth wrote for those
fields would only be found stale by the integrity scanner, so ``hearth migrate`` rebuilds the
search index when it crosses this revision (``cli.migrate``).
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
