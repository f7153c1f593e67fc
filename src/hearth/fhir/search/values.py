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
from datetime import UTC, datetime, timedelta, timezone
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

    Raises ``ValueError`` for anything that is not one of those forms.
    """
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a FHIR date")
    year = int(match["y"])
    if year < 1:
        raise ValueError("year out of range")
    if match["m"] is None:
        start = datetime(year, 1, 1, tzinfo=UTC)
        end = datetime(year + 1, 1, 1, tzinfo=UTC) if year < 9999 else None
        return _closed(start, end)
    month = int(match["m"])
    if match["d"] is None:
        start = datetime(year, month, 1, tzinfo=UTC)
        days = calendar.monthrange(year, month)[1]
        return _closed(start, start + timedelta(days=days))
    day = int(match["d"])
    if match["H"] is None:
        start = datetime(year, month, day, tzinfo=UTC)
        return _closed(start, start + timedelta(days=1))
    tz = UTC
    if match["tz"] and match["tz"] != "Z":
        sign = 1 if match["tz"][0] == "+" else -1
        hours, minutes = int(match["tz"][1:3]), int(match["tz"][4:6])
        tz = _offset(sign * (hours * 60 + minutes))
    base = datetime(year, month, day, int(match["H"]), int(match["M"]), tzinfo=tz)
    if match["S"] is None:
        return _closed(base, base + timedelta(minutes=1))
    base = base.replace(second=int(match["S"]))
    if match["f"] is None:
        return _closed(base, base + timedelta(seconds=1))
    digits = match["f"]
    micro = int((digits + "000000")[:6])
    start = base.replace(microsecond=micro)
    if len(digits) >= 6:
        return _closed(start, start + timedelta(microseconds=1))
    return _closed(start, start + timedelta(microseconds=10 ** (6 - len(digits))))


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def _closed(start: datetime, end: datetime | None) -> tuple[int, int]:
    lo = to_us(start)
    hi = MAX_US if end is None else to_us(end) - 1
    return lo, hi


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
