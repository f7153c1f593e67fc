"""Coarse buckets that let SQL narrow range searches over sealed dates and numbers.

A date or number is PHI, so the index never holds it, nor anything that orders like it. It
holds blind-indexed *bucket keys* instead: the year, month and day a date falls in (or, for a
period, a marker for the span), the order of magnitude and three significant digits of a
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
_MAX_YEAR_SPAN = 32


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _year_bounds(y: int) -> tuple[int, int]:
    return to_us(datetime(y, 1, 1, tzinfo=UTC)), to_us(datetime(y + 1, 1, 1, tzinfo=UTC)) - 1


def _month_bounds(y: int, m: int) -> tuple[int, int]:
    start = datetime(y, m, 1, tzinfo=UTC)
    days = calendar.monthrange(y, m)[1]
    return to_us(start), to_us(start + timedelta(days=days)) - 1


def date_index_keys(lo: int, hi: int) -> list[str]:
    """Bucket keys for a stored date range [lo, hi] (closed, microseconds)."""
    if lo < _W_LO or hi > _W_HI:
        return [WIDE]
    a, b = _dt(lo), _dt(hi)
    if a.year != b.year:
        if b.year - a.year >= _MAX_YEAR_SPAN:
            return [WIDE]
        return [f"x{y:04d}" for y in range(a.year, b.year + 1)]
    keys = [f"y{a.year:04d}"]
    if a.month != b.month:
        return [*keys, f"sy{a.year:04d}"]
    keys.append(f"m{a.year:04d}{a.month:02d}")
    if a.day != b.day:
        return [*keys, f"sm{a.year:04d}{a.month:02d}"]
    return [*keys, f"d{a.year:04d}{a.month:02d}{a.day:02d}"]


def _clamp(lo: int | None, hi: int | None) -> tuple[int, int] | None:
    lo = _W_LO if lo is None else max(lo, _W_LO)
    hi = _W_HI if hi is None else min(hi, _W_HI)
    return (lo, hi) if lo <= hi else None


def _months(lo: int, hi: int) -> list[tuple[int, int]]:
    a, b = _dt(lo), _dt(hi)
    out = []
    y, m = a.year, a.month
    while (y, m) <= (b.year, b.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def date_maybe_keys(lo: int | None, hi: int | None) -> set[str]:
    """Every key a stored range overlapping [lo, hi] must carry at least one of."""
    keys = {WIDE}
    clamped = _clamp(lo, hi)
    if clamped is None:
        return keys
    lo, hi = clamped
    a, b = _dt(lo), _dt(hi)
    years = range(a.year, b.year + 1)
    keys.update(f"x{y:04d}" for y in years)
    if (hi - lo) // DAY_US <= 62:
        day = datetime(a.year, a.month, a.day, tzinfo=UTC)
        while day <= b:
            keys.add(f"d{day.year:04d}{day.month:02d}{day.day:02d}")
            day += timedelta(days=1)
        months = _months(lo, hi)
        keys.update(f"sm{y:04d}{m:02d}" for y, m in months)
        keys.update(f"sy{y:04d}" for y in years)
    elif (b.year - a.year) * 12 + b.month - a.month <= 36:
        keys.update(f"m{y:04d}{m:02d}" for y, m in _months(lo, hi))
        keys.update(f"sy{y:04d}" for y in years)
    else:
        keys.update(f"y{y:04d}" for y in years)
    return keys


def date_sure_keys(lo: int | None, hi: int | None) -> set[str]:
    """Keys of whole years, months and days inside [lo, hi]: a value within one surely lies in
    the region."""
    clamped = _clamp(lo, hi)
    if clamped is None:
        return set()
    lo, hi = clamped
    keys: set[str] = set()
    for y in range(_dt(lo).year, _dt(hi).year + 1):
        ylo, yhi = _year_bounds(y)
        if lo <= ylo and yhi <= hi:
            keys.add(f"y{y:04d}")
            continue
        for m in range(1, 13):
            mlo, mhi = _month_bounds(y, m)
            if mhi < lo or mlo > hi:
                continue
            if lo <= mlo and mhi <= hi:
                keys.add(f"m{y:04d}{m:02d}")
                continue
            for d in range(calendar.monthrange(y, m)[1]):
                dlo = mlo + d * DAY_US
                if lo <= dlo and dlo + DAY_US - 1 <= hi:
                    keys.add(f"d{y:04d}{m:02d}{d + 1:02d}")
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
