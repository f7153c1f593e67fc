"""Date buckets: listing the buckets a region meets stops early without changing the answer."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.fhir.search import buckets
from hearth.fhir.search.values import to_us

LO = to_us(datetime(1800, 1, 1, tzinfo=UTC))
HI = to_us(datetime(2200, 1, 1, tzinfo=UTC)) - 1


def listed(level: int, lo: int, hi: int, limit: int) -> list[str] | None:
    """The buckets of ``level`` meeting [lo, hi] by walking them all, then the limit."""
    out = [buckets._bucket(level, lo)]
    while buckets._bounds(level, out[-1])[1] < hi:
        out.append(buckets._next(level, out[-1]))
    return None if len(out) > limit else out


@settings(max_examples=400, deadline=None)
@given(
    level=st.integers(0, 3),
    lo=st.integers(LO, HI),
    span_days=st.one_of(st.integers(0, 400), st.integers(0, 4_000), st.integers(0, 40_000)),
    limit=st.sampled_from([1, 4, 64, 10_000]),
)
def test_overlapping_matches_walking_every_bucket(
    level: int, lo: int, span_days: int, limit: int
) -> None:
    hi = min(HI, lo + span_days * buckets.DAY_US)
    if level == 3 and span_days > 20_000:
        return  # walking tens of thousands of days one by one is slow and proves nothing more
    assert buckets._overlapping(level, lo, hi, limit) == listed(level, lo, hi, limit)


def test_an_open_ended_date_search_lists_decades_not_days() -> None:
    lo = to_us(datetime(2021, 1, 1, tzinfo=UTC))
    keys = buckets.date_maybe_keys(lo, None)
    assert {"ic202", "ic219"} <= keys
    assert not any(k.startswith(("id", "im", "iy")) for k in keys)
