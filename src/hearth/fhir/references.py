"""The forms a FHIR R4 ``Reference.reference`` may take (references.html#literal).

- relative: ``Patient/123``, optionally versioned ``Patient/123/_history/2``;
- absolute: ``https://example.org/fhir/Patient/123`` (any http or https URL);
- local, to a contained resource: ``#p1`` (or ``#`` for the containing resource itself);
- logical identifiers used inside Bundles: ``urn:uuid:...`` and ``urn:oid:...``;
- conditional, only inside a transaction (http.html#trules, transaction.html):
  ``Patient?identifier=http://example.org|123``.

Pure string parsing; whether the named type is known is the caller's question.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["ReferenceKind", "ParsedReference", "parse_reference"]


class ReferenceKind(enum.StrEnum):
    RELATIVE = "relative"
    ABSOLUTE = "absolute"
    LOCAL = "local"
    UUID = "uuid"
    OID = "oid"
    CONDITIONAL = "conditional"


@dataclass(frozen=True, slots=True)
class ParsedReference:
    """A parsed reference. ``type``/``id``/``version`` are set where the form names them."""

    kind: ReferenceKind
    type: str | None = None
    id: str | None = None
    version: str | None = None


_ID = r"[A-Za-z0-9\-.]{1,64}"
_TYPE = r"[A-Z][A-Za-z]{1,63}"
_RELATIVE = re.compile(rf"({_TYPE})/({_ID})(?:/_history/({_ID}))?")
# An absolute URL that ends like a RESTful reference names its type and id (references.html).
_ABSOLUTE = re.compile(r"https?://[^\s/?#]+(?:/[^\s?#]*)?(?:\?[^\s#]*)?(?:#\S*)?")
_ABSOLUTE_TAIL = re.compile(rf"/({_TYPE})/({_ID})(?:/_history/({_ID}))?$")
_LOCAL = re.compile(rf"#(?:{_ID})?")
_UUID = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OID = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")
_CONDITIONAL = re.compile(rf"({_TYPE})\?\S+")


def parse_reference(value: str) -> ParsedReference | None:
    """Classify a literal reference, or return ``None`` if it has none of the R4 forms."""
    if not value or len(value) > 4096:
        return None
    first = value[0]
    if first == "#":
        if _LOCAL.fullmatch(value):
            return ParsedReference(ReferenceKind.LOCAL, id=value[1:] or None)
        return None
    if first == "u":
        if _UUID.fullmatch(value):
            return ParsedReference(ReferenceKind.UUID)
        if _OID.fullmatch(value):
            return ParsedReference(ReferenceKind.OID)
        return None
    if first == "h":
        if not _ABSOLUTE.fullmatch(value):
            return None
        tail = _ABSOLUTE_TAIL.search(value)
        if tail is None:
            return ParsedReference(ReferenceKind.ABSOLUTE)
        return ParsedReference(ReferenceKind.ABSOLUTE, tail[1], tail[2], tail[3])
    match = _RELATIVE.fullmatch(value)
    if match is not None:
        return ParsedReference(ReferenceKind.RELATIVE, match[1], match[2], match[3])
    match = _CONDITIONAL.fullmatch(value)
    if match is not None:
        return ParsedReference(ReferenceKind.CONDITIONAL, match[1])
    return None
