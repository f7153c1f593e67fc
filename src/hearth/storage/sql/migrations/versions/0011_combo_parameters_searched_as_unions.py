"""Observation's combo-* search parameters searched as unions (no schema change)

Revision ID: 0011
Revises: 0010

The schema does not change. Index rows are derived data, and from this revision Observation's
``combo-*`` parameters have none of their own (``hearth.fhir.search.extract._unions``): rows an
older Hearth wrote for them would only be found stale by the integrity scanner, so ``hearth
migrate`` rebuilds the search index when it crosses this revision (``cli.migrate``).
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
