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
from functools import cache
from typing import Any

from hearth.fhir import definitions
from hearth.fhir.definitions import ElementDef, TypeDef
from hearth.fhir.search.criteria import split_escaped

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
#: Primitive types that carry codes or numbers, never free text. ``code`` elements of the core
#: resources are bound to value sets; codes in extensions go with the extension (below).
_KEPT = frozenset({"boolean", "integer", "decimal", "positiveInt", "unsignedInt", "code", "time"})
#: Where a URI is definitional (a code system, a profile, an extension's definition, a type)
#: and stays; every other ``uri`` or ``canonical`` value may point at a person and goes.
_URI_KEPT = frozenset(
    {("Coding", "system"), ("Meta", "profile"), ("Extension", "url"), ("Reference", "type")}
)
#: Standard terminologies: a ``Coding`` in any other system (a local code system can hold
#: anything, an MRN included) is removed, and a search by one is refused.
STANDARD_SYSTEMS = frozenset(
    {
        "http://loinc.org",
        "http://snomed.info/sct",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-9-cm",
        "http://hl7.org/fhir/sid/cvx",
        "http://hl7.org/fhir/sid/ndc",
        "http://www.ama-assn.org/go/cpt",
        "http://unitsofmeasure.org",
        "http://dicom.nema.org/resources/ontology/DCM",
        "urn:oid:2.16.840.1.113883.6.238",  # CDC race and ethnicity
        "urn:ietf:bcp:47",  # languages
    }
)
_STANDARD_PREFIXES = ("http://terminology.hl7.org/CodeSystem/",)
#: Extensions that carry coded demographics research needs; every other extension goes (an
#: extension can say anything: a birth time, a nickname, a free-text note).
EXTENSIONS_KEPT = frozenset(
    {
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
    }
)
_QUANTITIES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)
_UCUM = "http://unitsofmeasure.org"
#: UCUM time units with years per unit, for the 90-years rule.
_YEARS_PER = {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}
#: Elements removed by name although their type would keep them.
_DROPPED = frozenset({("Meta", "source"), ("Resource", "implicitRules")})
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")
_ZIP = re.compile(r"\d{5}(-\d{4})?")
_OLDEST_AGE = 90


def standard_system(system: object) -> bool:
    return isinstance(system, str) and (
        system in STANDARD_SYSTEMS or system.startswith(_STANDARD_PREFIXES)
    )


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
        # Contained resources get ids of their own making (``c1``, ``c2``...): the ones they
        # were written with can say anything.
        local: dict[str, str] = {}
        for number, inner in enumerate(out.get("contained") or (), start=1):
            old = inner.get("id")
            inner["id"] = local_id = f"c{number}"
            if isinstance(old, str):
                local[old] = local_id
        _relink(out, local)
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
            # A contained resource's id is local to its container (renumbered by ``resource``).
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
        if type_name in _KEPT:
            return value
        if type_name in ("uri", "canonical"):
            return value if (parent.name, key) in _URI_KEPT else None
        if not isinstance(value, dict) or found.typedef is None:
            # Free text (``string``, ``markdown``) and unique numbers (``id``, ``oid``,
            # ``uuid``: DICOM UIDs, say) go, and so does anything this walk cannot type.
            return None
        if type_name == "Reference":
            return self._reference(value, found.typedef)
        if type_name == "Address":
            return self._address(value)
        if type_name == "Coding":
            return _coding(value)
        if type_name in _QUANTITIES:
            return _quantity(value, age=type_name == "Age")
        if type_name == "Extension":
            url = value.get("url")
            if not isinstance(url, str) or (
                url not in EXTENSIONS_KEPT and not (":" not in url and parent.name == "Extension")
            ):
                return None  # fail closed; a relative url names a part of a kept extension
        shaped = self._object(value, found.typedef, found.rel)
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
                out["reference"] = target  # renumbered with the contained ids
            elif matched := _RELATIVE.fullmatch(target):
                ref_type, ref_id = matched.group(1), matched.group(2)
                if definitions.is_resource_type(ref_type):
                    out["reference"] = f"{ref_type}/{self.pseudonym(ref_type, ref_id)}"
        if isinstance(value.get("type"), str):
            out["type"] = value["type"]
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


def _coding(value: Mapping[str, Any]) -> dict[str, Any] | None:
    """A coding of a standard terminology, as its system and code: a display or version is
    text a person may have typed, and a local code system can hold anything."""
    system, code = value.get("system"), value.get("code")
    if not standard_system(system) or not isinstance(code, str):
        return None
    return {"system": system, "code": code}


def _quantity(value: Mapping[str, Any], *, age: bool) -> dict[str, Any] | None:
    """A quantity's number and comparator, with its unit only as a UCUM code. A duration of 90
    years or more becomes ``>= 90 a`` (164.514(b)(2)(i)(C): ages over 89 are one category,
    whatever element holds them); an ``Age`` in a unit this cannot convert is removed."""
    out: dict[str, Any] = {}
    number = value.get("value")
    if isinstance(number, int | float) and not isinstance(number, bool):
        out["value"] = number
    if isinstance(value.get("comparator"), str):
        out["comparator"] = value["comparator"]
    code = value.get("code") if value.get("system") == _UCUM else None
    if isinstance(code, str):
        out.update(unit=code, system=_UCUM, code=code)
    per = _YEARS_PER.get(code) if isinstance(code, str) else None
    if age and "value" in out and per is None:
        return None
    if per is not None and "value" in out and out["value"] * per >= _OLDEST_AGE:
        return {"value": _OLDEST_AGE, "comparator": ">=", "unit": "a", "system": _UCUM, "code": "a"}
    return out or None


def _relink(node: Any, local: Mapping[str, str]) -> None:
    """Point ``#id`` references at the renumbered contained resources; drop the ones that name
    none (``#`` alone, the container itself, stays)."""
    if isinstance(node, list):
        for item in node:
            _relink(item, local)
    elif isinstance(node, dict):
        target = node.get("reference")
        if isinstance(target, str) and target.startswith("#") and target != "#":
            if target[1:] in local:
                node["reference"] = "#" + local[target[1:]]
            else:
                del node["reference"]
        for child in node.values():
            _relink(child, local)


# -- what a de-identified view may search by ------------------------------------------------------

#: Token parameters that would find a person by an identifier, a contact detail or a tag (tags
#: are local codes an importer or a person chose).
_IDENTIFYING_TOKENS = frozenset(
    {"_id", "identifier", "telecom", "phone", "email", "patient-identifier", "_source", "_tag"}
)
_SEARCHABLE_TYPES = frozenset({"token", "quantity", "number", "date"})
_MODIFIERS = frozenset({"", "not", "missing"})
#: ``ap`` is left out: its range widens with the distance to now, to the microsecond, which
#: finds dates finer than a year.
_DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")
_PREFIXES = (*_DATE_PREFIXES, "ap")
#: Birth dates: the parameters, and the youngest age whose birth year may be searched for.
_BIRTH_DATES = frozenset({"birthdate"})
_PATH = re.compile(r"[A-Z][A-Za-z]+(\.[a-z][A-Za-z]*)+")


@cache
def _plain_codes(res_type: str, code: str) -> bool:
    """Whether a token parameter's every path is a ``code`` or ``boolean`` element (a bare
    value such as ``gender=female`` names an entry of a bound value set, not a local code)."""
    param = definitions.search_parameter(res_type, code)
    if param is None or param.expression is None:
        return False
    for path in (p.strip() for p in param.expression.split("|")):
        element = definitions.element(path) if _PATH.fullmatch(path) else None
        if element is None or element.types not in (("code",), ("boolean",)):
            return False
    return True


def _token_refusal(res_type: str, code: str, value: str) -> str | None:
    for part in split_escaped(value, ","):
        system, bar, token = part.rpartition("|")
        if bar and standard_system(system) and token:
            continue
        if not bar and _plain_codes(res_type, code):
            continue
        return (
            f"'{code}': a de-identified view searches codes of standard terminologies as "
            "system|code (LOINC, SNOMED CT, RxNorm, ICD, CVX, UCUM, terminology.hl7.org)."
        )
    return None


def _quantity_refusal(code: str, value: str) -> str | None:
    for part in split_escaped(value, ","):
        number, _, unit = part.partition("|")
        number = number[2:] if number[:2] in _PREFIXES else number
        unit_code = unit.rpartition("|")[2]
        try:
            amount = float(number)
        except ValueError:
            return None  # the search itself refuses it
        per = _YEARS_PER.get(unit_code) if unit_code else (1.0 if code.endswith("age") else None)
        if per is not None and amount * per >= _OLDEST_AGE - 1:
            return f"'{code}': a de-identified view groups ages over 89; search below 89 years."
    return None


def _date_refusal(code: str, value: str, year_now: int) -> str | None:
    for part in split_escaped(value, ","):
        prefix = part[:2] if part[:2] in _PREFIXES else ""
        bare = part[len(prefix) :]
        if prefix == "ap" or not (len(bare) == 4 and bare.isdigit()):
            return f"'{code}': a de-identified view searches dates by year only (YYYY), without ap."
        if code in _BIRTH_DATES and year_now - int(bare) >= _OLDEST_AGE - 1:
            return f"'{code}': a de-identified view groups ages over 89; search later birth years."
    return None


def search_refusal(
    res_type: str,
    terms: tuple[tuple[str, str], ...],
    sort: tuple[tuple[str, str | None], ...],
    compartment: str | None,
    *,
    year: int,
) -> str | None:
    """Why a de-identified view may not run this search, or None if it may.

    ``terms`` are the criteria as ``(name, value)``; ``sort`` the sort keys as ``(code, type)``;
    ``year`` the current year. Allowed: codes of standard terminologies as ``system|code`` (a
    bare code only where the parameter's elements are ``code`` or ``boolean``), quantities and
    numbers (ages below 89 years), and dates to the year (birth years of patients under 89);
    with ``:not`` and ``:missing`` only. Refused: strings, references, chains and ``_has``, ids,
    identifiers, contact details, tags, local codes, compartments, finer dates and ``ap``, and
    sorting by anything but a code, quantity or number. The message names the parameter, never
    its value.
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
        if modifier == "missing":
            continue
        refusal = None
        if kind == "token":
            refusal = _token_refusal(res_type, code, value)
        elif kind == "quantity":
            refusal = _quantity_refusal(code, value)
        elif kind == "date":
            refusal = _date_refusal(code, value, year)
        if refusal is not None:
            return refusal
    for code, kind in sort:
        if kind not in ("token", "quantity", "number") or code in _IDENTIFYING_TOKENS:
            return f"_sort '{code}': a de-identified view sorts by codes, quantities and numbers."
    return None
