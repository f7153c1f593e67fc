"""Normalising the values search compares: strings, dates, numbers (R4 search.html#ptypes).

- Strings compare case- and accent-insensitively (search.html#string): ``fold`` applies Unicode
  compatibility decomposition, drops combining marks and case-folds.
- A date is a range set by its precision (search.html#date): ``2021-03`` is every instant of
  March 2021. Ranges here are closed intervals of microseconds since the Unix epoch, in UTC; a
  date or dateTime without a time zone is read as UTC.
- A number carries an implicit precision (search.html#number): ``5.4`` means [5.35, 5.45).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

__all__ = [
    "MAX_US",
    "MIN_US",
    "date_range",
    "fold",
    "parse_number",
    "soundex",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (search.html#string)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def to_us(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def date_range(text: str) -> tuple[int, int]:
    """The closed range of microseconds a FHIR date, dateTime or instant covers.

    Computed on naive date arithmetic and integer offsets, so the edges of the calendar
    (9999-12-31 in a negative offset, 0001-01-01 in a positive one) clamp to the representable
    range instead of overflowing. Raises ``ValueError`` for anything that is not one of those
    forms.
    """
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a FHIR date")
    year = int(match["y"])
    if year < 1:
        raise ValueError("year out of range")
    day_us = 86_400_000_000
    if match["m"] is None:
        span = (366 if calendar.isleap(year) else 365) * day_us
        return _closed(_naive_us(datetime(year, 1, 1)), span)
    month = int(match["m"])
    if match["d"] is None:
        span = calendar.monthrange(year, month)[1] * day_us
        return _closed(_naive_us(datetime(year, month, 1)), span)
    day = int(match["d"])
    if match["H"] is None:
        return _closed(_naive_us(datetime(year, month, day)), day_us)
    offset_us = 0
    if match["tz"] and match["tz"] != "Z":
        sign = 1 if match["tz"][0] == "+" else -1
        hours, minutes = int(match["tz"][1:3]), int(match["tz"][4:6])
        offset_us = sign * (hours * 60 + minutes) * 60_000_000
    base = _naive_us(datetime(year, month, day, int(match["H"]), int(match["M"]))) - offset_us
    if match["S"] is None:
        return _closed(base, 60_000_000)
    base += int(match["S"]) * 1_000_000
    if match["f"] is None:
        return _closed(base, 1_000_000)
    digits = match["f"]
    base += int((digits + "000000")[:6])
    return _closed(base, 10 ** max(0, 6 - len(digits)))


def _naive_us(ts: datetime) -> int:
    """Microseconds since the epoch of a naive (UTC) datetime; never overflows."""
    delta = ts - _NAIVE_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _closed(start_us: int, span_us: int) -> tuple[int, int]:
    def clamp(us: int) -> int:
        return min(MAX_US, max(MIN_US, us))

    return clamp(start_us), clamp(start_us + span_us - 1)


def parse_number(text: str) -> tuple[Decimal, Decimal]:
    """A decimal and half of its last significant place (search.html#number): ``5.4`` gives
    ``(5.4, 0.05)``; ``100`` gives ``(100, 0.5)``; ``1e2`` gives ``(100, 50)``."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite():
        raise ValueError("not a finite number")
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - finite decimals have one
        raise ValueError("not a finite number")
    return value, Decimal(5).scaleb(exponent - 1)


_SOUNDEX = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


def soundex(text: str) -> str:
    """American Soundex of the first word, for ``phonetic`` (search.html#string; R4 leaves the
    algorithm to the server)."""
    letters = [ch for ch in fold(text) if "a" <= ch <= "z"]
    if not letters:
        return ""
    out = letters[0].upper()
    last = _SOUNDEX.get(letters[0], "")
    for ch in letters[1:]:
        code = _SOUNDEX.get(ch, "")
        if code and code != last:
            out += code
            if len(out) == 4:
                break
        if ch not in "hw":
            last = code
    return out.ljust(4, "0")
