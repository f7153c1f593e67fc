"""Coarse buckets that let SQL narrow range searches over sealed dates and numbers.

A date or number is PHI, so the index never holds it, nor anything that orders like it. It
holds blind-indexed *bucket keys* instead: the decade, year, month and day a date falls in (or,
for a period, a marker for the span), the order of magnitude and three significant digits of a
number. A range search is answered in two parts:

- ``sure_keys``: buckets lying wholly inside the region where every value surely matches; a row
  with one of these keys matches without being opened;
- ``maybe_keys``: every bucket that could hold a matching value; rows with only these keys are
  opened and checked by the repository, within the search's stated bound.

The key strings never leave the process in the clear: the storage layer blinds each of them
with the parameter's domain before it reaches SQL. Values outside the window (dates before 1800
or from 2200, numbers beyond 1e-12..1e21, open-ended periods) get the key ``w`` ("wide") and are
always opened: rare, and never wrong.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hearth.fhir.search.values import to_us

__all__ = [
    "DAY_US",
    "NumberRegion",
    "WIDE",
    "date_index_keys",
    "date_maybe_keys",
    "date_sure_keys",
    "number_index_keys",
    "number_maybe_keys",
    "number_sure_keys",
]

WIDE = "w"
DAY_US = 86_400_000_000
_WINDOW_YEARS = (1800, 2199)
_W_LO = to_us(datetime(_WINDOW_YEARS[0], 1, 1, tzinfo=UTC))
_W_HI = to_us(datetime(_WINDOW_YEARS[1] + 1, 1, 1, tzinfo=UTC)) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


# Date levels, coarsest first: decade, year, month, day. Each bucket is [lo, hi] in microseconds.
_LEVELS = ("c", "y", "m", "d")
_MAX_DECADE_SPAN = 4
_ENUMERATE = 64


def _bucket(level: int, us: int) -> str:
    t = _dt(us)
    if level == 0:
        return f"{t.year // 10:03d}"
    if level == 1:
        return f"{t.year:04d}"
    if level == 2:
        return f"{t.year:04d}{t.month:02d}"
    return f"{t.year:04d}{t.month:02d}{t.day:02d}"


def _bounds(level: int, key: str) -> tuple[int, int]:
    if level == 0:
        start = datetime(int(key) * 10, 1, 1, tzinfo=UTC)
        end = datetime(int(key) * 10 + 10, 1, 1, tzinfo=UTC)
    elif level == 1:
        start = datetime(int(key), 1, 1, tzinfo=UTC)
        end = datetime(int(key) + 1, 1, 1, tzinfo=UTC)
    elif level == 2:
        y, m = int(key[:4]), int(key[4:])
        start = datetime(y, m, 1, tzinfo=UTC)
        end = start + timedelta(days=calendar.monthrange(y, m)[1])
    else:
        start = datetime(int(key[:4]), int(key[4:6]), int(key[6:]), tzinfo=UTC)
        end = start + timedelta(days=1)
    return to_us(start), to_us(end) - 1


def _next(level: int, key: str) -> str:
    return _bucket(level, _bounds(level, key)[1] + 1)


# The longest bucket of each level, in days (a decade, a year, a month, a day): a region longer
# than ``limit + 1`` of them meets more than ``limit`` buckets, so none need be listed.
_LONGEST_DAYS = (3653, 366, 31, 1)


def _overlapping(level: int, lo: int, hi: int, limit: int) -> list[str] | None:
    """Buckets of ``level`` meeting [lo, hi], or None if there are more than ``limit``."""
    if (hi - lo) // DAY_US > (limit + 1) * _LONGEST_DAYS[level]:
        return None
    out = []
    key = _bucket(level, lo)
    while True:
        out.append(key)
        if len(out) > limit:
            return None
        if _bounds(level, key)[1] >= hi:
            return out
        key = _next(level, key)


def date_index_keys(lo: int, hi: int) -> list[str]:
    """Bucket keys for a stored date range [lo, hi] (closed, microseconds).

    ``i{level}{bucket}`` for every level at which the range lies inside one bucket; where it
    stops fitting, ``s{level}{bucket}`` ("spans finer buckets inside this one"); a range wider
    than a decade gets ``x{decade}`` for each decade it meets (up to four), else ``w``."""
    if lo < _W_LO or hi > _W_HI:
        return [WIDE]
    keys: list[str] = []
    for level, name in enumerate(_LEVELS):
        a, b = _bucket(level, lo), _bucket(level, hi)
        if a != b:
            if level == 0:
                decades = _overlapping(0, lo, hi, _MAX_DECADE_SPAN)
                return [f"x{d}" for d in decades] if decades else [WIDE]
            return [*keys, f"s{_LEVELS[level - 1]}{_bucket(level - 1, lo)}"]
        keys.append(f"i{name}{a}")
    return keys


def _clamp(lo: int | None, hi: int | None) -> tuple[int, int] | None:
    lo = _W_LO if lo is None else max(lo, _W_LO)
    hi = _W_HI if hi is None else min(hi, _W_HI)
    return (lo, hi) if lo <= hi else None


def date_maybe_keys(lo: int | None, hi: int | None) -> set[str]:
    """Every key a stored range overlapping [lo, hi] must carry at least one of."""
    keys = {WIDE}
    clamped = _clamp(lo, hi)
    if clamped is None:
        return keys
    lo, hi = clamped
    decades = _overlapping(0, lo, hi, 10_000) or []
    keys.update(f"x{d}" for d in decades)
    # The finest level that enumerates the region in few buckets; values that fit a bucket of
    # it carry its "i" key, coarser ones the "s" marker of the level where they stop fitting.
    chosen = 0
    for level in (3, 2, 1, 0):
        found = _overlapping(level, lo, hi, _ENUMERATE)
        if found is not None or level == 0:
            chosen = level
            buckets = found if found is not None else decades
            keys.update(f"i{_LEVELS[level]}{b}" for b in buckets)
            break
    for level in range(chosen):
        for b in _overlapping(level, lo, hi, 10_000) or []:
            keys.add(f"s{_LEVELS[level]}{b}")
    return keys


def date_sure_keys(lo: int | None, hi: int | None) -> set[str]:
    """Keys of whole decades, years, months and days inside [lo, hi]: a value that lies within
    one surely lies in the region."""
    clamped = _clamp(lo, hi)
    if clamped is None:
        return set()
    lo, hi = clamped
    keys: set[str] = set()

    def cover(level: int, start: int, end: int) -> None:
        for b in _overlapping(level, start, end, 10_000) or []:
            blo, bhi = _bounds(level, b)
            if lo <= blo and bhi <= hi:
                keys.add(f"i{_LEVELS[level]}{b}")
            elif level < 3:
                cover(level + 1, max(blo, start), min(bhi, end))

    cover(0, lo, hi)
    return keys


# ---------------------------------------------------------------------------- numbers

_EXP = (-12, 20)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class NumberRegion:
    """An interval of decimals; ``None`` is unbounded; ``*_open`` excludes the end."""

    lo: Decimal | None
    lo_open: bool
    hi: Decimal | None
    hi_open: bool

    def holds(self, x: Decimal) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))

    def overlaps(self, a: Decimal, b: Decimal) -> bool:
        """Whether the closed hull [a, b] meets the region (a superset test for [a, b))."""
        if self.lo is not None and (b < self.lo or (self.lo_open and b == self.lo)):
            return False
        return not (self.hi is not None and (a > self.hi or (self.hi_open and a == self.hi)))

    def covers(self, a: Decimal, b: Decimal) -> bool:
        """Whether the closed hull [a, b] lies inside the region (a subset test)."""
        return self.holds(a) and self.holds(b)


def _magnitude(sign: str, exp: int) -> tuple[Decimal, Decimal]:
    lo, hi = _ONE.scaleb(exp), _ONE.scaleb(exp + 1)
    return (lo, hi) if sign == "p" else (-hi, -lo)


def _digits(sign: str, exp: int, ddd: int) -> tuple[Decimal, Decimal]:
    lo, hi = Decimal(ddd).scaleb(exp - 2), Decimal(ddd + 1).scaleb(exp - 2)
    return (lo, hi) if sign == "p" else (-hi, -lo)


def number_index_keys(x: Decimal) -> list[str]:
    if x == 0:
        return ["z"]
    exp = x.adjusted()
    if not _EXP[0] <= exp <= _EXP[1]:
        return [WIDE]
    sign = "p" if x > 0 else "n"
    ddd = int(abs(x).scaleb(2 - exp))  # the first three significant digits, 100..999
    return [f"e{sign}{exp}", f"f{sign}{exp}:{ddd}"]


def _magnitudes() -> list[tuple[str, int]]:
    return [(s, e) for s in ("n", "p") for e in range(_EXP[0], _EXP[1] + 1)]


def number_maybe_keys(region: NumberRegion, limit: int = 400) -> set[str]:
    keys = {WIDE}
    if region.holds(Decimal(0)):
        keys.add("z")
    for sign, exp in _magnitudes():
        lo, hi = _magnitude(sign, exp)
        if not region.overlaps(lo, hi):
            continue
        if region.covers(lo, hi):
            keys.add(f"e{sign}{exp}")
            continue
        fine = [
            f"f{sign}{exp}:{d}" for d in range(100, 1000) if region.overlaps(*_digits(sign, exp, d))
        ]
        if len(fine) <= limit:
            keys.update(fine)
        else:
            keys.add(f"e{sign}{exp}")
    return keys


def number_sure_keys(region: NumberRegion, limit: int = 400) -> set[str]:
    keys: set[str] = set()
    if region.holds(Decimal(0)):
        keys.add("z")
    for sign, exp in _magnitudes():
        lo, hi = _magnitude(sign, exp)
        if region.covers(lo, hi):
            keys.add(f"e{sign}{exp}")
        elif region.overlaps(lo, hi):
            fine = [
                f"f{sign}{exp}:{d}"
                for d in range(100, 1000)
                if region.covers(*_digits(sign, exp, d))
            ]
            if len(fine) <= limit:
                keys.update(fine)
    return keys
