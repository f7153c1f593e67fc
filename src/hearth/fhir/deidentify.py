"""The de-identified view: HIPAA Safe Harbor (164.514(b)(2)), applied by the gate.

A role whose ``view`` is ``deidentified`` (the shipped ``researcher``) reaches every patient, but
every resource it receives has been rewritten here first, and it can search only in ways that
cannot single out a person it already knows (``search_refusal``).

What leaves (docs/design.md, "The de-identified view"):

- the resource id and every reference become keyed pseudonyms (``KeyRing.pseudonym``), stable,
  so records still join (164.514(c)); references to anything else (absolute URLs, identifiers,
  ``display`` text) are dropped;
- names (``HumanName``), telecom (``ContactPoint``), identifiers (``Identifier``: medical record,
  health plan, account, licence, device numbers...), attachments (photos, documents), notes
  (``Annotation``), narrative, signatures and binary content are removed wherever they appear;
- addresses keep state and country and the first three digits of a US postal code, ``000`` for
  the three-digit areas of 20,000 people or fewer (the Census list of 164.514(b)(2)(i)(B));
- every date and dateTime keeps its year only; instants (``meta.lastUpdated``, ``issued``) go;
- a birth date that puts the patient at 90 or older goes too, and an ``Age`` of 90 years or
  more becomes ``>= 90 a`` (164.514(b)(2)(i)(C));
- ``id``, ``oid`` and ``uuid`` values other than ``meta.versionId`` go (unique numbers such as
  DICOM UIDs);
- free text (``string`` and ``markdown``) goes, except the display of a code and the unit of a
  quantity, which come from terminologies; URLs go, and so do ``meta.source`` and elements this
  module cannot type (fail closed);
- the resource is marked ``PSEUDED`` (v3-ObservationValue) in ``meta.security``.

The walk is driven by the R4 structure definitions (``hearth.fhir.definitions``), so the rules
are stated per datatype and hold in every resource type, in extensions, in backbone elements and
in contained resources alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hearth.fhir import definitions
from hearth.fhir.definitions import ElementDef, TypeDef

__all__ = [
    "PSEUDED",
    "RESTRICTED_ZIP3",
    "Deidentifier",
    "search_refusal",
]

PSEUDED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}

#: Three-digit ZIP areas of 20,000 people or fewer (HHS guidance on 164.514(b)(2), 2010 Census):
#: their postal codes become ``000``.
RESTRICTED_ZIP3 = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip

#: Datatypes that are identifying, or may hold anything: removed wherever they appear.
_REMOVED = frozenset(
    {
        "HumanName",
        "ContactPoint",
        "Identifier",
        "Attachment",
        "Annotation",
        "Narrative",
        "Signature",
        "base64Binary",
        "xhtml",
        "url",
        "instant",
    }
)
#: Primitive types that carry codes, numbers or definitional URIs, never free text.
_KEPT = frozenset(
    {
        "boolean",
        "integer",
        "decimal",
        "positiveInt",
        "unsignedInt",
        "code",
        "uri",
        "canonical",
        "time",
    }
)
#: Identifier-like primitives: ``oid``, ``uuid`` and ``id`` values (DICOM UIDs, say) are unique
#: numbers (164.514(b)(2)(i)(R)); only a version id stays.
_ID_KEPT = frozenset({("Meta", "versionId")})
#: Age units in UCUM, with years per unit, for the 90-years rule.
_YEARS_PER = {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25, "h": 1 / 8766}
#: The free-text elements that come from terminologies and stay: (datatype, element).
_TEXT_KEPT = frozenset(
    {("Coding", "display"), ("Coding", "version")}
    | {
        (q, "unit")
        for q in ("Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity",
                  "MoneyQuantity")
    }
)  # fmt: skip
#: Elements removed by name although their type would keep them.
_DROPPED = frozenset({("Meta", "source"), ("Resource", "implicitRules")})
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")
_ZIP = re.compile(r"\d{5}(-\d{4})?")
_OLDEST_AGE = 90


@dataclass(frozen=True, slots=True)
class _Field:
    element: ElementDef
    type_name: str
    #: where the value's own elements are defined: its datatype, or the backbone it belongs to
    typedef: TypeDef | None
    rel: str


def _field(typedef: TypeDef, rel: str, key: str) -> _Field | None:
    """The definition of ``key`` in an object of ``typedef`` at ``rel`` (a backbone path)."""
    path = f"{rel}.{key}" if rel else key
    element = typedef.elements.get(path)
    type_name: str | None = None
    if element is None:
        prefix = f"{rel}." if rel else ""
        for candidate_rel, candidate in typedef.elements.items():
            inside = candidate_rel.startswith(prefix) and "." not in candidate_rel[len(prefix) :]
            if key in candidate.choices and inside:
                element, type_name = candidate, candidate.choices[key]
                break
        if element is None:
            return None
    if element.content_reference is not None:
        ref_type, _, ref_rel = element.content_reference.partition(".")
        found = definitions.type_definition(ref_type)
        return _Field(element, "BackboneElement", found, ref_rel) if found else None
    if element.backbone:
        return _Field(element, "BackboneElement", typedef, path)
    if type_name is None:
        if len(element.types) != 1:
            return None
        type_name = element.types[0]
    return _Field(element, type_name, definitions.type_definition(type_name), "")


@dataclass(frozen=True, slots=True)
class Deidentifier:
    """Rewrites resources for the de-identified view.

    ``pseudonym(type, id)`` is the keyed pseudonym (``KeyRing.pseudonym``); ``year`` is the
    current year, for the 90-years rule (passed in, like every clock).
    """

    pseudonym: Callable[[str, str], str]
    year: int

    def resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """A de-identified copy of ``resource``, marked ``PSEUDED``."""
        out = self._resource(resource, contained=False)
        meta = dict(out.get("meta") or {})
        security = [c for c in meta.get("security") or [] if c != PSEUDED]
        meta["security"] = [*security, dict(PSEUDED)]
        out["meta"] = meta
        return out

    def _resource(self, resource: Mapping[str, Any], *, contained: bool) -> dict[str, Any]:
        typedef = definitions.type_definition(str(resource.get("resourceType")))
        if typedef is None or typedef.kind != "resource":
            return {}
        res_type = typedef.name
        out: dict[str, Any] = {"resourceType": res_type}
        res_id = resource.get("id")
        if isinstance(res_id, str):
            # A contained resource's id is local to its container (``#id`` references).
            out["id"] = res_id if contained else self.pseudonym(res_type, res_id)
        body = self._object({k: v for k, v in resource.items() if k != "id"}, typedef, "")
        out.update(body)
        if res_type == "Patient":
            self._oldest(out)
        return out

    def _oldest(self, patient: dict[str, Any]) -> None:
        """164.514(b)(2)(i)(C): ages over 89 are aggregated into one category, 90 or older; a
        birth year that places the patient there is removed."""
        born = patient.get("birthDate")
        if (
            isinstance(born, str)
            and born[:4].isdigit()
            and self.year - int(born[:4]) >= _OLDEST_AGE
        ):
            del patient["birthDate"]

    def _object(self, obj: Mapping[str, Any], typedef: TypeDef, rel: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "resourceType" or key.startswith("_"):
                # ``_birthDate``-style siblings carry extensions of a primitive: they may say
                # anything, and the primitive itself may have been generalised or removed.
                continue
            found = _field(typedef, rel, key)
            if found is None or (typedef.name, key) in _DROPPED or ("Resource", key) in _DROPPED:
                continue
            if isinstance(value, list):
                shaped = (self._value(item, found, typedef, key) for item in value)
                kept = [v for v in shaped if v is not None]
                if kept:
                    out[key] = kept
            else:
                single = self._value(value, found, typedef, key)
                if single is not None:
                    out[key] = single
        return out

    def _value(self, value: Any, found: _Field, parent: TypeDef, key: str) -> Any:
        type_name = found.type_name
        if type_name in _REMOVED:
            return None
        if type_name == "Resource" or definitions.is_resource_type(type_name):
            return self._resource(value, contained=True) if isinstance(value, dict) else None
        if type_name in ("date", "dateTime"):
            return value[:4] if isinstance(value, str) and value[:4].isdigit() else None
        if type_name in ("string", "markdown"):
            return value if (parent.name, key) in _TEXT_KEPT and isinstance(value, str) else None
        if type_name in _KEPT:
            return value
        if type_name in ("id", "oid", "uuid"):
            return value if (parent.name, key) in _ID_KEPT else None
        if not isinstance(value, dict) or found.typedef is None:
            return None
        if type_name == "Reference":
            return self._reference(value, found.typedef)
        if type_name == "Address":
            return self._address(value)
        shaped = self._object(value, found.typedef, found.rel)
        if type_name == "Age":
            return _age(shaped)
        if type_name == "Extension" and not any(
            k == "extension" or k.startswith("value") for k in shaped
        ):
            return None  # an extension whose value went says nothing (and would be invalid)
        return shaped or None

    def _reference(self, value: Mapping[str, Any], typedef: TypeDef) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        target = value.get("reference")
        if isinstance(target, str):
            if target.startswith("#"):
                out["reference"] = target
            elif matched := _RELATIVE.fullmatch(target):
                ref_type, ref_id = matched.group(1), matched.group(2)
                if definitions.is_resource_type(ref_type):
                    out["reference"] = f"{ref_type}/{self.pseudonym(ref_type, ref_id)}"
        if isinstance(value.get("type"), str):
            out["type"] = value["type"]
        if "extension" in value:
            rest = self._object({"extension": value["extension"]}, typedef, "")
            out.update(rest)
        return out or None

    def _address(self, value: Mapping[str, Any]) -> dict[str, Any] | None:
        out = {
            k: value[k]
            for k in ("use", "type", "state", "country")
            if isinstance(value.get(k), str)
        }
        postal = value.get("postalCode")
        if isinstance(postal, str) and _ZIP.fullmatch(postal.strip()):
            zip3 = postal.strip()[:3]
            out["postalCode"] = "000" if zip3 in RESTRICTED_ZIP3 else zip3
        return out or None


def _age(age: dict[str, Any]) -> dict[str, Any] | None:
    """An ``Age`` of 90 years or more becomes ``>= 90 a`` (164.514(b)(2)(i)(C)); an age in a
    unit this cannot convert is removed rather than guessed at."""
    value = age.get("value")
    if value is None:
        return age or None
    unit = age.get("code") if age.get("system") == "http://unitsofmeasure.org" else None
    per = _YEARS_PER.get(unit) if isinstance(unit, str) else None
    if per is None or not isinstance(value, int | float):
        return None
    if value * per < _OLDEST_AGE:
        return age
    return {
        "value": _OLDEST_AGE,
        "comparator": ">=",
        "unit": "years",
        "system": "http://unitsofmeasure.org",
        "code": "a",
    }


# -- what a de-identified view may search by ------------------------------------------------------

#: Token parameters that would find a person by an identifier or a contact detail.
_IDENTIFYING_TOKENS = frozenset(
    {"_id", "identifier", "telecom", "phone", "email", "patient-identifier", "_source"}
)
_SEARCHABLE_TYPES = frozenset({"token", "quantity", "number", "date"})
_MODIFIERS = frozenset({"", "not", "missing"})
_DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")


def search_refusal(
    res_type: str,
    terms: tuple[tuple[str, str], ...],
    sort: tuple[tuple[str, str | None], ...],
    compartment: str | None,
) -> str | None:
    """Why a de-identified view may not run this search, or None if it may.

    ``terms`` are the criteria as ``(name, value)``; ``sort`` the sort keys as ``(code, type)``.
    Allowed: codes (token parameters other than identifiers and contact details), quantities,
    numbers, and dates to the year; with ``:not`` and ``:missing`` only. Refused: strings,
    references, chains and ``_has``, ids, compartments, finer dates, and sorting by anything but
    a code, quantity or number. The message names the parameter, never its value.
    """
    if compartment is not None:
        return "A de-identified view does not search one patient's compartment."
    for name, value in terms:
        code, _, modifier = name.partition(":")
        if "." in name or code == "_has":
            return f"'{name}': a de-identified view does not follow references."
        if modifier not in _MODIFIERS:
            return f"'{name}': a de-identified view allows the modifiers :not and :missing only."
        param = definitions.search_parameter(res_type, code)
        kind = param.type if param is not None else None
        if kind not in _SEARCHABLE_TYPES or code in _IDENTIFYING_TOKENS:
            return (
                f"'{code}': a de-identified view searches by codes, quantities, numbers and "
                "years only."
            )
        if kind == "date" and modifier != "missing":
            for part in value.split(","):
                bare = part[2:] if part[:2] in _DATE_PREFIXES else part
                if not (len(bare) == 4 and bare.isdigit()):
                    return f"'{code}': a de-identified view searches dates by year only (YYYY)."
    for code, kind in sort:
        if kind not in ("token", "quantity", "number") or code in _IDENTIFYING_TOKENS:
            return f"_sort '{code}': a de-identified view sorts by codes, quantities and numbers."
    return None
