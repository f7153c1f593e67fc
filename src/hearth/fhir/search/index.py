"""Index entries for one resource: blind-index keys, clear references and the patient compartment.

``index_resource`` turns a resource into what the search tables hold about it
(docs/design.md, "Search indexes"):

- ``keys``: ``(domain, key)`` pairs that the storage layer replaces by
  ``KeyRing.blind(domain, key)`` before anything reaches SQL. The domain names the resource type
  and parameter; the key names what is known about one value: a string prefix, a token, a date
  or number bucket. Nothing here is stored as it is;
- ``refs``: ``(parameter, target type, target id)`` of each literal relative reference. These are
  stored in the clear: random ids and types, which say nothing about a person on their own, and
  which chained search, ``_include``, ``_revinclude``, compartments and access scoping join on;
- ``patients``: the ids of the patients whose compartment holds the resource
  (compartmentdefinition-patient.html), for ``$everything`` and for access scoping in SQL.

Key kinds (the prefix of each key string) are listed in ``KEY_KINDS``; the matcher and planner
build query keys with the functions below so that both sides always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import product
from typing import Any

from hearth.fhir import definitions
from hearth.fhir.search.buckets import WIDE, date_index_keys, number_index_keys
from hearth.fhir.search.extract import (
    Memo,
    Param,
    Quantity,
    Ref,
    Token,
    indexed_params,
    own_values,
)
from hearth.fhir.search.values import fold, soundex

__all__ = [
    "CLEAR_PARAMS",
    "KEY_KINDS",
    "PREFIX_MAX",
    "PRESENT",
    "TRIGRAM_MAX",
    "IndexEntries",
    "index_resource",
    "quantity_keys",
    "token_keys",
    "trigrams",
]

#: String prefixes are indexed up to this many characters; a longer query prefix is narrowed by
#: its first ``PREFIX_MAX`` characters and finished by the repository after opening.
PREFIX_MAX = 16
#: Strings longer than this (after folding) are not split into trigrams; ``:contains`` opens them.
TRIGRAM_MAX = 64
#: Parameters answered from clear columns of ``search_resource`` (random id, write time).
CLEAR_PARAMS = frozenset({"_id", "_lastUpdated"})
#: The key a resource carries for each parameter it has a value for (``:missing``), except a
#: reference parameter whose values are all literal references: their rows say it.
PRESENT = "?"

KEY_KINDS = {
    "?": "the parameter has a value (:missing); not for literal references, whose rows say it",
    "x:": "string, exact (:exact)",
    "p:": "string, folded prefix of 1..16 characters (default string search)",
    "n:": "string, the whole folded value when longer than 16 characters",
    "3:": "string, folded trigram (:contains); 3L marks a string too long for trigrams",
    "s:": "string, Soundex of a name part (phonetic)",
    "c:": "token, code in any system",
    "sc:": "token, system|code",
    "ns:": "token, code with no system (|code)",
    "sy:": "token, system alone (system|)",
    "ot:": "token, identifier type system|code|value (:of-type)",
    "u:": "uri or non-relative reference, whole",
    "i:": "reference, identifier system|value (:identifier); - for no system, * for any",
    "d:": "date, bucket (see buckets.py)",
    "#:": "number, bucket",
    "q:": "quantity, unit variant and bucket",
    "k:": "composite, the component keys joined by $",
}


@dataclass(slots=True)
class IndexEntries:
    keys: set[tuple[str, str]] = field(default_factory=set)
    refs: set[tuple[str, str, str]] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)


def trigrams(folded: str) -> set[str]:
    return {folded[i : i + 3] for i in range(len(folded) - 2)}


def string_keys(value: str) -> Iterator[str]:
    yield "x:" + value
    folded = fold(value)
    for n in range(1, min(len(folded), PREFIX_MAX) + 1):
        yield "p:" + folded[:n]
    if len(folded) > PREFIX_MAX:
        yield "n:" + folded
    if len(folded) > TRIGRAM_MAX:
        yield "3L"
    else:
        for gram in trigrams(folded):
            yield "3:" + gram


def token_keys(token: Token) -> Iterator[str]:
    if token.code is not None:
        yield "c:" + token.code
        if token.system is not None:
            yield f"sc:{token.system}|{token.code}"
        else:
            yield "ns:" + token.code
        for tsys, tcode in token.types:
            yield f"ot:{tsys or ''}|{tcode or ''}|{token.code}"
    if token.system is not None:
        yield "sy:" + token.system


def ref_keys(ref: Ref) -> Iterator[str]:
    if ref.url is not None:
        yield "u:" + ref.url
        if "|" in ref.url:  # a versioned canonical matches its unversioned URL too
            yield "u:" + ref.url.split("|", 1)[0]
    if ref.identifier is not None:
        system, value = ref.identifier
        if value is not None:
            yield f"i:{system or '-'}|{value}"
            yield f"i:*|{value}"


def _unit_variants(q: Quantity) -> list[str]:
    variants = [""]
    if q.system is not None and q.code is not None:
        variants.append(f"sc:{q.system}|{q.code}")
    for unit in {q.code, q.unit} - {None}:
        variants.append(f"c:{unit}")
    return variants


def quantity_keys(q: Quantity) -> Iterator[str]:
    buckets = [WIDE] if q.wide or q.value is None else number_index_keys(q.value)
    for variant in _unit_variants(q):
        for bucket in buckets:
            yield f"q:{variant}:{bucket}"


def date_keys(lo: int, hi: int) -> Iterator[str]:
    for bucket in date_index_keys(lo, hi):
        yield "d:" + bucket


def number_keys(x: Decimal) -> Iterator[str]:
    for bucket in number_index_keys(x):
        yield "#:" + bucket


def component_keys(kind: str, value: Any) -> list[str]:
    """Keys of one composite component's value: fewer variants than a full parameter."""
    if kind == "token":
        out = []
        if value.code is not None:
            out.append("c:" + value.code)
            if value.system is not None:
                out.append(f"sc:{value.system}|{value.code}")
        return out
    if kind == "quantity":
        buckets = [WIDE] if value.wide or value.value is None else number_index_keys(value.value)
        out = [f"q::{b}" for b in buckets]
        if value.system is not None and value.code is not None:
            out += [f"q:sc:{value.system}|{value.code}:{b}" for b in buckets]
        return out
    if kind == "date":
        return list(date_keys(*value))
    if kind == "number":
        return list(number_keys(value))
    if kind == "string":
        return ["*", "n:" + fold(value)]
    if kind == "uri":
        return ["u:" + value]
    if kind == "reference":
        if value.type is not None and value.id is not None:
            return [f"r:{value.type}/{value.id}", "r:" + value.id]
        return list(ref_keys(value))
    return []


def param_keys(param: Param, values: Iterable[Any]) -> Iterator[str]:
    kind = param.type
    for value in values:
        if kind == "string":
            if param.code == "phonetic":
                code = soundex(value)
                if code:
                    yield "s:" + code
            else:
                yield from string_keys(value)
        elif kind == "token":
            yield from token_keys(value)
        elif kind == "reference":
            yield from ref_keys(value)
        elif kind == "date":
            yield from date_keys(*value)
        elif kind == "number":
            yield from number_keys(value)
        elif kind == "quantity":
            yield from quantity_keys(value)
        elif kind == "uri":
            yield "u:" + value
        elif kind == "composite":
            parts = [
                sorted({k for v in values_ for k in component_keys(c.type, v)})
                for c, values_ in zip(param.components, value, strict=True)
            ]
            for combo in product(*parts):
                yield "k:" + "$".join(combo)


def index_resource(resource: dict[str, Any], *, references_only: bool = False) -> IndexEntries:
    """Everything the search tables hold about ``resource`` (current version); with
    ``references_only``, only its ``refs`` and ``patients`` (no keys), at a fraction of the cost:
    what the access rules decide relationships on."""
    res_type = resource["resourceType"]
    out = IndexEntries()
    compartment = set(definitions.patient_compartment(res_type))
    memo: Memo = {}
    for param in indexed_params(res_type).values():
        if param.code in CLEAR_PARAMS or not param.own_keys:
            continue  # a union's keys are its parts' (extract._unions)
        if references_only and param.type != "reference":
            continue
        keys = param.compiled.keys
        if keys is not None and keys.isdisjoint(resource):
            continue
        values = own_values(param, resource, memo)
        if not values:
            continue
        domain = param.domain
        if not references_only:
            out.keys.update((domain, key) for key in param_keys(param, values))
        if param.type != "reference":
            out.keys.add((domain, PRESENT))
            continue
        # A literal reference has a row of its own, which says the parameter has a value
        # (criteria._present); the key is written only for values without one (a URL, an
        # identifier alone): a reference parameter's keys were an eighth of a Synthea bundle's.
        for ref in values:
            if ref.type is not None and ref.id is not None:
                out.refs.add((param.code, ref.type, ref.id))
                if param.code in compartment and ref.type == "Patient":
                    out.patients.add(ref.id)
            else:
                out.keys.add((domain, PRESENT))
    if res_type == "Patient" and isinstance(resource.get("id"), str):
        out.patients.add(resource["id"])
    return out
