"""Query plans that decide whether a lookup stays cheap as the tables grow (SQLite).

A row-value ``IN`` list is not searched through an index by SQLite: a transaction bundle's
lookup of its entries' current versions scanned every row of ``resource_current``. These read
the plan, not the time."""

from __future__ import annotations

from sqlalchemy import Select, create_engine, select

from hearth.storage.sql import tables as t
from hearth.storage.sql.conditions import pairs_in

PAIRS = [("Patient", "p1"), ("Observation", "o5"), ("Observation", "o6")]


def plan(query: Select[tuple[int]]) -> str:
    engine = create_engine("sqlite://")
    t.metadata.create_all(engine)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(r[-1]) for r in rows)


def test_current_rows_of_pairs_are_searched_by_key() -> None:
    text = plan(
        select(t.resource_current.c.seq).where(
            pairs_in(t.resource_current.c.res_type, t.resource_current.c.res_id, PAIRS)
        )
    )
    assert "SEARCH resource_current USING" in text, text
    assert "SCAN resource_current" not in text, text


def test_references_to_pairs_are_searched_by_target() -> None:
    x = t.search_reference
    text = plan(select(x.c.seq).where(pairs_in(x.c.target_type, x.c.target_id, PAIRS)))
    assert "SEARCH search_reference USING" in text, text
    assert "SCAN search_reference" not in text, text
