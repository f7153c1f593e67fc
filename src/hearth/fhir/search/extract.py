"""What a search parameter selects from a resource, as typed values (R4 search.html#ptypes).

``extract(param, resource)`` evaluates the parameter's FHIRPath and turns each selected element
into the value its search type compares: strings, tokens, references, date ranges, numbers,
quantities, URIs, or for a composite one tuple of component values per selected element. The
indexer builds index keys from these values and the matcher checks opened resources against
them, so both read a resource the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from hearth.fhir import definitions
from hearth.fhir.search.fhirpath import (
    Compiled,
    Node,
    UnsupportedExpression,
    compile_expression,
    reference_type,
)
from hearth.fhir.search.values import MAX_US, MIN_US, date_range

__all__ = [
    "Component",
    "Param",
    "Quantity",
    "Ref",
    "Token",
    "Value",
    "extract",
    "indexed_params",
    "own_values",
    "param_for",
    "read_elements",
]

#: Search types Hearth indexes; ``special`` (``near``) and the expression-less parameters
#: (``_text``, ``_content``, ``_query``, ``_filter``) are not among them.
SUPPORTED_TYPES = frozenset(
    {"string", "token", "reference", "date", "number", "quantity", "uri", "composite"}
)


@dataclass(frozen=True, slots=True)
class Token:
    system: str | None
    code: str | None
    text: tuple[str, ...] = ()
    types: tuple[tuple[str | None, str | None], ...] = ()  # Identifier.type codings (:of-type)


@dataclass(frozen=True, slots=True)
class Ref:
    type: str | None
    id: str | None
    url: str | None = None  # an absolute, canonical or logical reference, kept whole
    identifier: tuple[str | None, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal | None
    system: str | None
    code: str | None
    unit: str | None
    wide: bool = False  # a Range: compared by the matcher, never narrowed by bucket


Value = Any  # str | Token | Ref | tuple[int, int] | Decimal | Quantity | tuple[list, ...]


@dataclass(frozen=True, slots=True)
class Component:
    code: str
    type: str
    compiled: Compiled
    #: The element type its expression is read against and the expression: one expression
    #: read against one type selects the same values (``extract``'s memo).
    memo_key: str = ""


@dataclass(frozen=True, slots=True)
class Param:
    """A search parameter of one resource type, compiled for indexing and matching."""

    res_type: str
    code: str
    type: str
    compiled: Compiled
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    #: The parameters whose keys are this one's too. Without ``shared_fields``, R4 defines it as
    #: exactly theirs together (``_unions``): it has no index keys of its own.
    union_of: tuple[str, ...] = ()
    #: For a string parameter over a HumanName or an Address, the element's fields that
    #: ``union_of`` index already (``name`` and ``family``, ``given``): its own keys are only
    #: its other fields' (``_element_unions``).
    shared_fields: frozenset[str] = frozenset()

    @property
    def domain(self) -> str:
        """The blind-index domain: keys of different parameters never collide."""
        return _domain(self.res_type, self.code)

    @property
    def own_keys(self) -> bool:
        """Whether the index holds keys in this parameter's own domain."""
        return bool(self.shared_fields) or not self.union_of

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains that hold this parameter's keys: its own, its parts', or both."""
        own = (self.code,) if self.own_keys else ()
        return tuple(_domain(self.res_type, c) for c in own + self.union_of)


def _domain(res_type: str, code: str) -> str:
    return f"search/v1/{res_type}/{code}"


def _type_of(res_type: str) -> Any:
    def type_of(path: str) -> str | None:
        if "|" in path:
            return path.rsplit("|", 1)[1]
        root, _, rest = path.partition(".")
        if root in ("Resource", "DomainResource"):
            root = res_type
        if not rest:
            return root
        found = definitions.element(f"{root}.{rest}")
        if found is None or len(found.types) != 1:
            return None
        return found.types[0]

    return type_of


def _component_root(res_type: str, base_path: str) -> str:
    """The type a composite's component expressions are evaluated against."""
    if base_path == res_type:
        return res_type
    found = definitions.element(base_path)
    if found is not None and len(found.types) == 1 and not found.backbone:
        return found.types[0]
    return base_path  # a backbone element: component paths are relative to it


def _choices_of(res_type: str) -> Any:
    def choices_of(path: str) -> Mapping[str, str] | None:
        root, _, rest = path.partition(".")
        if root in ("Resource", "DomainResource"):
            root = res_type
        found = definitions.element(f"{root}.{rest}") or definitions.element(f"{root}.{rest}[x]")
        if found is None:
            return None
        return found.choices if found.path.endswith("[x]") else {}

    return choices_of


@cache
def indexed_params(res_type: str) -> Mapping[str, Param]:
    """Every search parameter of ``res_type`` that Hearth indexes, by code."""
    out: dict[str, Param] = {}
    for code, sp in definitions.search_parameters(res_type).items():
        if sp.type not in SUPPORTED_TYPES or not sp.expression:
            continue
        try:
            compiled = compile_expression(
                sp.expression, res_type, _choices_of(res_type)
            ).with_types(_type_of(res_type))
        except UnsupportedExpression:
            continue
        components: list[Component] = []
        if sp.type == "composite":
            for part in sp.components:
                target = definitions.search_parameter(res_type, part.code)
                if target is None or target.type in ("composite", "special"):
                    break
                root = _component_root(res_type, compiled.paths[0])
                try:
                    sub = compile_expression(
                        f"_X_.{part.expression}", "_X_", _relative_choices_of(root)
                    )
                except UnsupportedExpression:
                    break
                sub = sub.with_types(_relative_type_of(root))
                components.append(Component(part.code, target.type, sub, f"{root}\x00{sub.source}"))
            if len(components) != len(sp.components) or not components:
                continue
        out[code] = Param(res_type, code, sp.type, compiled, sp.targets, tuple(components))
    for code, parts in _unions(out).items():
        out[code] = replace(out[code], union_of=parts)
    for code, (parts, fields) in _element_unions(out).items():
        out[code] = replace(out[code], union_of=parts, shared_fields=fields)
    return out


#: Parameter types whose values are only blind-index keys (a reference also has rows of its
#: own in ``search_reference``, under its code, so it is never searched as a union).
_KEYED_TYPES = frozenset({"string", "token", "date", "number", "quantity", "uri", "composite"})
#: Parameters whose index is not keys built by their type alone: the clear columns (``_id``,
#: ``_lastUpdated``), the other common parameters, and ``phonetic`` (Soundex keys): never a
#: union nor a part of one.
_SPECIAL_KEYS = frozenset(
    {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "phonetic"}
)


def _unions(params: Mapping[str, Param]) -> dict[str, tuple[str, ...]]:
    """Parameters that R4 defines as exactly the union of others, with those others' codes.

    ``P`` is the union of ``A`` and ``B`` when its expression's alternatives (``x | y``, split
    at the top level) are, word for word, ``A``'s and ``B``'s together, neither sharing one,
    and all three have the same type (and, for composites, the same components). FHIRPath's
    ``|`` is the union of what each alternative selects, so ``P``'s index keys would be
    exactly ``A``'s and ``B``'s: indexing them again under ``P`` doubles the rows for nothing.
    In R4 these are Observation's ``combo-*`` parameters (``combo-code`` is ``code`` and
    ``component-code``), which were 20 of the 50 keys of an Observation with a code, a
    quantity and a date."""

    def signature(param: Param) -> tuple[str, tuple[tuple[str, str], ...]]:
        return param.type, tuple((c.type, c.compiled.source) for c in param.components)

    branches: dict[str, frozenset[str]] = {}
    for code, param in params.items():
        alternatives = _alternatives(param.compiled.source)
        if param.type in _KEYED_TYPES and code not in _SPECIAL_KEYS and alternatives is not None:
            branches[code] = frozenset(alternatives)
    out: dict[str, tuple[str, ...]] = {}
    for code, mine in branches.items():
        if len(mine) < 2:
            continue
        kind = signature(params[code])
        parts = sorted(
            other
            for other, theirs in branches.items()
            if other != code and theirs < mine and signature(params[other]) == kind
        )
        covered = [branches[p] for p in parts]
        together = frozenset().union(*covered)
        disjoint = sum(len(b) for b in covered) == len(together)
        if len(parts) >= 2 and disjoint and together == mine:
            out[code] = tuple(parts)
    return out


def _element_unions(
    params: Mapping[str, Param],
) -> dict[str, tuple[tuple[str, ...], frozenset[str]]]:
    """String parameters over an element some of whose fields have string parameters of their
    own, with those parameters and the fields they index.

    A string search on a HumanName or an Address looks in its fields (``_strings``): ``name``
    (``Patient.name``) in ``family``, ``given``, ``prefix``, ``suffix`` and ``text``. When another
    parameter's expression is, word for word, this one's followed by one of those fields
    (``family`` is ``Patient.name.family``), it selects exactly that field's strings, so its keys
    are the ones this parameter would have had for that field: this parameter keeps keys of its
    own only for the other fields and is searched in its own domain and theirs. In R4 these are
    ``name`` (``family``, ``given``) of Patient and Practitioner, and ``address``
    (``address-city``, ``-state``, ``-postalcode``, ``-country``) of those and Person,
    RelatedPerson, Location, Organization and InsurancePlan: 65 of the 202 keys of the core
    benchmark's Patient. A part of a union (``_unions``) is never one: that union is searched in
    its parts' own domains alone."""
    in_unions = {part for param in params.values() for part in param.union_of}
    paths: dict[str, str] = {}
    for code, param in params.items():
        if (
            param.type == "string"
            and code not in _SPECIAL_KEYS
            and not param.union_of
            and code not in in_unions
        ):
            alternatives = _alternatives(param.compiled.source)
            if alternatives is not None and len(alternatives) == 1:
                paths[code] = alternatives[0]
    out: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
    for code, path in paths.items():
        by_field: dict[str, str] = {}
        for other in sorted(paths):
            head, _dot, field = paths[other].rpartition(".")
            if other != code and head == path and field in _ELEMENT_FIELDS:
                by_field.setdefault(field, other)
        if by_field:
            out[code] = (tuple(sorted(set(by_field.values()))), frozenset(by_field))
    # A part is read as a plain string parameter: it must not have parts of its own.
    return {
        code: (parts, fields)
        for code, (parts, fields) in out.items()
        if not any(part in out for part in parts)
    }


#: FHIRPath operators that bind less tightly than ``|`` (fhirpath.html#operator-precedence): at
#: the top level of an expression they apply to a whole union, not to one alternative.
_LOOSER_THAN_UNION = re.compile(r"[=<>~]|\b(?:in|contains|and|or|xor|implies)\b")


def _alternatives(expression: str) -> list[str] | None:
    """``expression`` split at its top-level ``|`` (outside parentheses, brackets, string
    literals and delimited identifiers); None when the top level also holds an operator that
    binds less tightly than ``|`` (``a | b = c`` compares the union, so it is no union)."""
    out: list[str] = []
    top: list[str] = []  # the text outside every bracket and literal, to look for operators
    depth = 0
    quote: str | None = None
    escaped = False
    start = 0
    for i, ch in enumerate(expression):
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            if ch == "|":
                out.append(expression[start:i].strip())
                start = i + 1
            top.append(ch)
    out.append(expression[start:].strip())
    if _LOOSER_THAN_UNION.search("".join(top)):
        return None
    return out


def _relative_choices_of(root: str) -> Any:
    def choices_of(path: str) -> Mapping[str, str] | None:
        rest = path.partition(".")[2]
        found = definitions.element(f"{root}.{rest}") or definitions.element(f"{root}.{rest}[x]")
        if found is None:
            return None
        return found.choices if found.path.endswith("[x]") else {}

    return choices_of


def _relative_type_of(root: str) -> Any:
    def type_of(path: str) -> str | None:
        if "|" in path:
            return path.rsplit("|", 1)[1]
        rest = path.partition(".")[2]
        found = definitions.element(f"{root}.{rest}") if rest else None
        if found is None or len(found.types) != 1:
            return None
        return found.types[0]

    return type_of


def param_for(res_type: str, code: str) -> Param | None:
    return indexed_params(res_type).get(code)


@cache
def read_elements(res_type: str, code: str) -> frozenset[str] | None:
    """The top-level elements of a ``res_type`` resource that parameter ``code`` reads, as JSON
    keys (a choice element as each of its typed keys: ``valueQuantity``, ``valueString``...);
    None when that cannot be told (an unknown parameter). Which resources match a criterion
    tells something of every element it reads, so a role that may not see one of them may not
    search by it (docs/design.md, "Labels, masks, Consent")."""
    param = param_for(res_type, code)
    if param is None:
        return None
    if param.compiled.keys is not None:
        return param.compiled.keys
    out: set[str] = set()
    for path in param.compiled.paths:
        segments = path.split("|", 1)[0].split(".")
        if len(segments) == 1:
            # A composite over the resource itself (``code-value-quantity``): its components'
            # expressions, read against the resource, name the elements.
            if not param.components:
                return None
            for component in param.components:
                if component.compiled.keys is None:
                    return None
                out |= component.compiled.keys
            continue
        name = segments[1].split("[", 1)[0]
        choice = definitions.element(f"{res_type}.{name}[x]")
        out |= set(choice.choices) if choice is not None and choice.choices else {name}
    return frozenset(out)


# ------------------------------------------------------------------------------ values


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    # A FhirDecimal (hearth.fhir.jsonbody) keeps the literal it was written as: 5.40 is 5.40.
    literal = getattr(value, "literal", None)
    try:
        out = Decimal(literal if isinstance(literal, str) else str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


#: The fields of HumanName and Address a string search looks in: one string, or a list.
_SINGLE_FIELDS = ("family", "text", "city", "district", "state", "postalCode", "country")
_LIST_FIELDS = ("given", "prefix", "suffix", "line")
_ELEMENT_FIELDS = frozenset(_SINGLE_FIELDS + _LIST_FIELDS)


def _strings(value: Any, kind: str | None, skip: frozenset[str] = frozenset()) -> Iterable[str]:
    """The strings a string search on ``value`` looks in, less those of the fields in ``skip``."""
    if isinstance(value, str):
        yield value
        return
    if not isinstance(value, dict):
        return
    if kind == "Extension" or (kind is None and "url" in value and len(value) <= 3):
        for key, inner in value.items():
            if key.startswith("value") and isinstance(inner, str):
                yield inner
        return
    for key in _SINGLE_FIELDS:
        inner = value.get(key)
        if isinstance(inner, str) and key not in skip:
            yield inner
    for key in _LIST_FIELDS:
        if key in skip:
            continue
        for inner in value.get(key) or ():
            if isinstance(inner, str):
                yield inner


def _coding(c: Any, texts: tuple[str, ...] = ()) -> Token | None:
    if not isinstance(c, dict):
        return None
    system, code, display = c.get("system"), c.get("code"), c.get("display")
    text = (*texts, display) if isinstance(display, str) else texts
    return Token(
        system if isinstance(system, str) else None,
        code if isinstance(code, str) else None,
        text,
    )


def _tokens(value: Any, kind: str | None) -> Iterable[Token]:
    if isinstance(value, bool):
        yield Token(None, "true" if value else "false")
        return
    if isinstance(value, str | int):
        yield Token(None, str(value))
        return
    if not isinstance(value, dict):
        return
    if kind == "Extension":
        for key, inner in value.items():
            if key.startswith("value"):
                yield from _tokens(inner, key[5:] or None)
        return
    if "coding" in value or kind == "CodeableConcept":
        text = value.get("text")
        texts = (text,) if isinstance(text, str) else ()
        codings = [t for t in (_coding(c, texts) for c in value.get("coding") or ()) if t]
        yield from codings
        if not codings and texts:
            yield Token(None, None, texts)
        return
    if kind == "Identifier" or (kind is None and "value" in value and "use" in value):
        found_type = value.get("type")
        type_cc: dict[str, Any] = found_type if isinstance(found_type, dict) else {}
        types = tuple(
            (c.get("system"), c.get("code"))
            for c in type_cc.get("coding") or ()
            if isinstance(c, dict)
        )
        type_text = type_cc.get("text")
        yield Token(
            value.get("system") if isinstance(value.get("system"), str) else None,
            value.get("value") if isinstance(value.get("value"), str) else None,
            (type_text,) if isinstance(type_text, str) else (),
            types,
        )
        return
    if kind == "ContactPoint":
        val = value.get("value")
        system = value.get("system")
        yield Token(
            system if isinstance(system, str) else None, val if isinstance(val, str) else None
        )
        return
    token = _coding(value)
    if token is not None and (token.code is not None or token.system is not None):
        yield token
    elif "value" in value and isinstance(value.get("value"), str):
        system = value.get("system")
        yield Token(system if isinstance(system, str) else None, value["value"])


def _refs(value: Any, kind: str | None) -> Iterable[Ref]:
    if isinstance(value, str):  # canonical or uri
        yield Ref(None, None, url=value)
        return
    if not isinstance(value, dict):
        return
    if kind == "Extension":
        for key, inner in value.items():
            if key.startswith("value"):
                yield from _refs(inner, key[5:] or None)
        return
    literal = value.get("reference")
    ident = value.get("identifier")
    identifier = None
    if isinstance(ident, dict):
        sys, val = ident.get("system"), ident.get("value")
        identifier = (sys if isinstance(sys, str) else None, val if isinstance(val, str) else None)
    if isinstance(literal, str):
        if literal.startswith("#"):
            return  # a contained resource: not searchable across resources
        parts = literal.split("/")
        if "://" not in literal and not literal.startswith("urn:") and len(parts) in (2, 4):
            yield Ref(parts[0], parts[1], identifier=identifier)
            return
        yield Ref(reference_type(value), None, url=literal, identifier=identifier)
        return
    if identifier is not None:
        yield Ref(reference_type(value), None, identifier=identifier)


def _date(value: Any, kind: str | None) -> Iterable[tuple[int, int]]:
    if isinstance(value, str):
        try:
            yield date_range(value)
        except ValueError:
            return
        return
    if not isinstance(value, dict):
        return
    if kind == "Extension":
        for key, inner in value.items():
            if key.startswith("value"):
                yield from _date(inner, key[5:] or None)
        return
    if "start" in value or "end" in value or kind == "Period":
        lo, hi = MIN_US, MAX_US
        try:
            if isinstance(value.get("start"), str):
                lo = date_range(value["start"])[0]
            if isinstance(value.get("end"), str):
                hi = date_range(value["end"])[1]
        except ValueError:
            return
        if lo <= hi:
            yield lo, hi
        return
    for event in value.get("event") or ():  # Timing
        if isinstance(event, str):
            try:
                yield date_range(event)
            except ValueError:
                continue


def _quantities(value: Any, kind: str | None) -> Iterable[Quantity]:
    if not isinstance(value, dict):
        number = _decimal(value)
        if number is not None:
            yield Quantity(number, None, None, None)
        return
    if kind == "Extension":
        for key, inner in value.items():
            if key.startswith("value"):
                yield from _quantities(inner, key[5:] or None)
        return
    if "low" in value or "high" in value or kind == "Range":
        yield Quantity(None, None, None, None, wide=True)
        return
    number = _decimal(value.get("value"))
    if number is None:
        return
    if "currency" in value:  # Money
        currency = value.get("currency")
        yield Quantity(number, "urn:iso:std:iso:4217", currency, currency)
        return
    system, code, unit = value.get("system"), value.get("code"), value.get("unit")
    yield Quantity(
        number,
        system if isinstance(system, str) else None,
        code if isinstance(code, str) else None,
        unit if isinstance(unit, str) else None,
    )


def _numbers(value: Any, kind: str | None) -> Iterable[Decimal]:
    if isinstance(value, dict):
        if kind == "Extension":
            for key, inner in value.items():
                if key.startswith("value"):
                    yield from _numbers(inner, None)
        elif "value" in value:
            number = _decimal(value.get("value"))
            if number is not None:
                yield number
        return
    number = _decimal(value)
    if number is not None:
        yield number


def _uris(value: Any, kind: str | None) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict) and kind == "Extension":
        for key, inner in value.items():
            if key.startswith("value") and isinstance(inner, str):
                yield inner


_BY_TYPE: dict[str, Callable[[Any, str | None], Iterable[Value]]] = {
    "string": _strings,
    "token": _tokens,
    "reference": _refs,
    "date": _date,
    "number": _numbers,
    "quantity": _quantities,
    "uri": _uris,
}


def values_of(search_type: str, nodes: Iterable[Node]) -> list[Value]:
    convert = _BY_TYPE[search_type]
    out: list[Value] = []
    for value, kind in nodes:
        out.extend(convert(value, kind))
    return out


#: What one resource's parameters have selected so far (``extract``'s ``memo``): values by
#: (element id, expression key, search type), with 0 for the resource itself.
Memo = dict[tuple[int, str, str], list[Value]]


def extract(param: Param, resource: dict[str, Any], memo: Memo | None = None) -> list[Value]:
    """The values ``param`` selects from ``resource``; for a composite, one tuple per element
    with each component's values.

    ``memo``, a dict kept while one unchanged resource is indexed, shares the work of
    parameters with the same expression (``Observation.code`` is in ``code`` and in four
    ``code-value-*`` composites): each expression is evaluated once per element."""
    if param.type != "composite":
        return _selected(memo, 0, param.compiled.source, param.compiled, param.type, resource)
    out: list[Value] = []
    for value, _kind in param.compiled(resource):
        if not isinstance(value, dict):
            continue
        parts = tuple(
            _selected(memo, id(value), c.memo_key, c.compiled, c.type, value)
            for c in param.components
        )
        if all(parts):
            out.append(parts)
    return out


def own_values(param: Param, resource: dict[str, Any], memo: Memo | None = None) -> list[Value]:
    """The values ``param`` indexes in its own domain: ``extract``'s, less the strings of the
    fields its parts index (``Param.shared_fields``)."""
    if not param.shared_fields:
        return extract(param, resource, memo)
    skip = param.shared_fields
    return [s for value, kind in param.compiled(resource) for s in _strings(value, kind, skip)]


def _selected(
    memo: Memo | None,
    element: int,
    expression: str,
    compiled: Compiled,
    kind: str,
    value: dict[str, Any],
) -> list[Value]:
    """``values_of(kind, compiled(value))``, once per ``memo``. ``element`` is the id of
    ``value`` (0: the resource, whose type fixes how ``expression`` reads)."""
    if memo is None:
        return values_of(kind, compiled(value))
    key = (element, expression, kind)
    found = memo.get(key)
    if found is None:
        found = memo[key] = values_of(kind, compiled(value))
    return found
