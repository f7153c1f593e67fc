"""Structural validation of FHIR R4 resources in JSON form (json.html, validation.html#structure).

:func:`validate_resource` checks a parsed JSON resource against the R4 (4.0.1) structure
definitions in :mod:`hearth.fhir.definitions` and raises one
``HearthError(INVALID_RESOURCE, issues=...)`` listing every problem it found (up to
:data:`MAX_ISSUES`). What it checks:

- ``resourceType`` names one of the 146 R4 resource types, at the root and for every contained
  or nested resource (``Bundle.entry.resource``, ``Parameters.parameter.resource``);
- every property is an element of its type (unknown elements are refused: the server must not
  silently drop data, http.html#update); ``_name`` primitive-extension siblings belong to a
  primitive element and line up with its array (json.html#primitive);
- each value has the JSON type FHIR JSON requires: arrays exactly where the maximum cardinality
  is more than one, objects for complex types, strings/booleans/numbers for primitives; integer
  ranges (32-bit, ``positiveInt`` > 0, ``unsignedInt`` >= 0) and the R4 regex of each string
  primitive (``date``, ``dateTime``, ``instant``, ``time``, ``uri``, ``code``, ``id``, ``oid``,
  ``uuid``, ``base64Binary``...); no control characters in strings (datatypes.html#string);
- required bindings (terminologies.html#required): a ``code`` element bound with strength
  *required* to a value set the R4 package lists completely (``Patient.gender``,
  ``Observation.status``, ``Timing.repeat.dayOfWeek``..., 341 elements) holds one of its codes,
  each entry of an array checked on its own;
- cardinality: required elements present, maximum counts respected, one variant only of a
  choice element (``value[x]``);
- no empty objects, arrays or strings and no ``null`` outside a primitive array (json.html);
- references (references.html#literal): ``Reference.reference`` is relative ``Type/id``
  (optionally ``/_history/n``) with a known type, an absolute http(s) URL, ``#id`` naming a
  contained resource of the same resource (ref-1), ``urn:uuid:`` or ``urn:oid:``; conditional
  references ``Type?query`` only inside a transaction Bundle; the referenced type is one the
  element allows;
- invariants that need no FHIRPath engine: ele-1 (an element has a value or children), ext-1
  (an extension has a value or nested extensions, not both), dom-2/dom-4/dom-5 (contained
  resources have no contained resources, no ``meta.versionId``/``lastUpdated``, no
  ``meta.security``); the narrative ``div`` is an XHTML ``<div>`` string.

Not checked: other bindings (``Coding`` and ``CodeableConcept`` elements, *extensible*,
*preferred* and *example* strengths, and the required bindings to value sets defined outside the
package: mime types, ISO 4217 currencies), the other invariants (FHIRPath constraints), profiles
named in ``meta.profile``, XHTML content rules beyond the outer ``<div>``. Decimal precision is
kept by ``hearth.fhir.jsonbody.FhirDecimal``.

Diagnostics never contain values from the resource. ``expression`` is the element path
(``Patient.name[0].given[1]``); an unknown property's name is echoed only when it is shaped like
a FHIR element name, so a key that carries data does not come back in the answer.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

from hearth.domain import HearthError, Issue
from hearth.domain.errors import (
    BAD_PRIMITIVE,
    BAD_REFERENCE,
    BUSINESS_RULE,
    CARDINALITY,
    CODE_NOT_IN_VALUE_SET,
    INVALID_RESOURCE,
    MISSING_RESOURCE_TYPE,
    NESTING_TOO_DEEP,
    REQUIRED_MISSING,
    TYPE_MISMATCH,
    UNKNOWN_ELEMENT,
    UNKNOWN_RESOURCE_TYPE,
    WRONG_TYPE,
    ErrorCode,
)
from hearth.fhir import definitions
from hearth.fhir.jsonbody import FhirDecimal
from hearth.fhir.references import ReferenceKind, parse_reference

__all__ = ["MAX_ISSUES", "MAX_DEPTH", "validate_resource", "collect_issues"]

#: Validation stops collecting after this many issues; the client fixes those first.
MAX_ISSUES: Final = 100
#: Objects nested deeper than this are not walked (parse_json_body's own limit is lower).
MAX_DEPTH: Final = 128

_PRIM: Final = 0
_COMPLEX: Final = 1
_RESOURCE: Final = 2

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

# Control characters FHIR strings may not contain (datatypes.html#string: nothing below U+0020
# but tab, carriage return and line feed).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# An element name echoed back in diagnostics must look like one (lowerCamelCase ASCII).
_ELEMENT_NAME = re.compile(r"_?[a-z][A-Za-z0-9]{0,63}")


class _Full(Exception):
    """Raised inside the walk when MAX_ISSUES is reached, to stop early."""


class _Field:
    """One JSON property of a node: ``Patient.birthDate``, ``Observation.valueQuantity``."""

    __slots__ = (
        "array",
        "check",
        "choice",
        "kind",
        "max",
        "name",
        "node",
        "system",
        "targets",
        "type",
    )

    def __init__(self, name: str, type_name: str, kind: int, array: bool, max_: int) -> None:
        self.name = name
        self.type = type_name
        self.kind = kind
        self.array = array
        self.max = max_  # -1: unbounded
        self.choice: str | None = None  # the [x] element this variant belongs to
        self.node: _Node = _LEAF  # complex and backbone fields: the node of their elements
        self.check: _Check = _no_check  # primitive fields: the JSON type and format check
        self.system = False
        self.targets: frozenset[str] | None = None  # None: any resource type


class _Node:
    """The elements of one type or backbone element, keyed by JSON property name."""

    __slots__ = ("extension", "fields", "has_choices", "label", "reference", "required", "resource")

    def __init__(self, label: str) -> None:
        self.label = label
        self.fields: dict[str, _Field] = {}
        # (element name for messages, JSON names any one of which satisfies it)
        self.required: list[tuple[str, tuple[str, ...]]] = []
        self.has_choices = False
        self.resource = False
        self.extension = False
        self.reference = False


# A primitive check answers None when the value is good, else the issue code and a diagnostic.
_Check = Callable[[Any], tuple[ErrorCode, str] | None]


def _no_check(value: Any) -> tuple[ErrorCode, str] | None:
    return None


_LEAF = _Node("")


class _Schema:
    __slots__ = ("element", "resources")

    def __init__(self, resources: dict[str, _Node], element: _Node) -> None:
        self.resources = resources
        self.element = element  # the Element type: what a ``_name`` sibling may hold


# ----------------------------------------------------------------------------- primitives


def _string_check(name: str, regex: str | None) -> _Check:
    """A check for a primitive written as a JSON string, using its R4 regex.

    R4 regexes are XML Schema regexes, where ``\\s`` is only space, tab, CR and LF; compiling
    with ``re.ASCII`` keeps ``\\S`` from treating non-ASCII whitespace as excluded, and the
    control-character rule removes the remaining difference (form feed, vertical tab).
    """
    wrong = f"Expected a JSON string for a FHIR {name}."
    bad = f"The value is not a valid FHIR {name}."
    pattern = _primitive_pattern(name, regex)
    control = _CONTROL.search

    def check(value: Any) -> tuple[ErrorCode, str] | None:
        if type(value) is not str:
            return WRONG_TYPE, wrong
        if not value:
            return BAD_PRIMITIVE, "Empty strings are not allowed in FHIR JSON."
        if pattern is not None and pattern(value) is None:
            return BAD_PRIMITIVE, bad
        # isprintable() is a fast, sufficient test for most values; only strings with line
        # breaks, tabs or unusual Unicode take the exact control-character search.
        if not value.isprintable() and control(value) is not None:
            return BAD_PRIMITIVE, "The value contains a control character."
        return None

    return check


def _primitive_pattern(name: str, regex: str | None) -> Callable[[str], Any] | None:
    if name in ("string", "markdown"):
        # "[ \r\n\t\S]+" accepts every non-empty string once control characters are excluded.
        return None
    if name == "base64Binary":
        # The R4 regex "(\s*([0-9a-zA-Z\+/=]){4}\s*)+" backtracks exponentially on long
        # near-misses (the two \s* overlap). This one accepts exactly the same strings: groups
        # of four alphabet characters with optional whitespace before, between and after.
        return re.compile(r"[ \t\n\r]*(?:[0-9a-zA-Z+/=]{4}[ \t\n\r]*)+").fullmatch
    if name == "xhtml":
        # Narrative.div is XHTML with a <div> root (narrative.html#xhtml); its content rules
        # (txt-1, txt-2) need an XML parser and are not checked here.
        return re.compile(r"\s*<div[\s>/].*", re.DOTALL).fullmatch
    if regex is None:
        return None
    return re.compile(regex, re.ASCII).fullmatch


def _integer_check(name: str) -> _Check:
    low = {"positiveInt": 1, "unsignedInt": 0}.get(name, _INT32_MIN)
    wrong = f"Expected a JSON integer for a FHIR {name}."
    bad = f"The value is out of range for a FHIR {name}."

    def check(value: Any) -> tuple[ErrorCode, str] | None:
        if type(value) is not int:
            return WRONG_TYPE, wrong
        if value < low or value > _INT32_MAX:
            return BAD_PRIMITIVE, bad
        return None

    return check


def _decimal_check(value: Any) -> tuple[ErrorCode, str] | None:
    kind = type(value)
    if kind is int:
        return None
    if kind is float or kind is FhirDecimal:
        return None if math.isfinite(value) else (BAD_PRIMITIVE, "Decimals must be finite.")
    return WRONG_TYPE, "Expected a JSON number for a FHIR decimal."


def _boolean_check(value: Any) -> tuple[ErrorCode, str] | None:
    if type(value) is bool:
        return None
    return WRONG_TYPE, "Expected true or false for a FHIR boolean."


def _bound_check(check_format: _Check, url: str, codes: frozenset[str]) -> _Check:
    """A ``code`` check that also requires one of the codes of a value set.

    A member of ``codes`` is accepted at once: the generator refuses a value set listing a code
    that is not a well-formed ``code``, so membership implies the format check would pass. A
    value outside the set gets the format check's issue if it has one, else this one; the
    diagnostic names the value set, never the value.
    """
    not_in_value_set = (
        CODE_NOT_IN_VALUE_SET,
        f"The code is not in the value set this element requires ({url}).",
    )

    def check(value: Any) -> tuple[ErrorCode, str] | None:
        if type(value) is str and value in codes:
            return None
        problem = check_format(value)
        return not_in_value_set if problem is None else problem

    return check


def _checks() -> dict[str, _Check]:
    out: dict[str, _Check] = {}
    for name, prim in definitions.primitive_types().items():
        if prim.json == "boolean":
            out[name] = _boolean_check
        elif prim.json == "integer":
            out[name] = _integer_check(name)
        elif prim.json == "decimal":
            out[name] = _decimal_check
        else:
            out[name] = _string_check(name, prim.regex)
    return out


# ----------------------------------------------------------------------------- compiling


@cache
def _schema() -> _Schema:
    """Compile the definitions into linked nodes, once: one node per type and backbone path."""
    checks = _checks()
    type_names = definitions.type_names()
    nodes: dict[str, _Node] = {}
    typedefs = {name: definitions.type_definition(name) for name in type_names}
    for name, typedef in typedefs.items():
        if typedef is None:  # pragma: no cover - type_names() lists only defined types
            continue
        nodes[name] = _Node(name)
        for rel, el in typedef.elements.items():
            if el.backbone:
                nodes[f"{name}.{rel}"] = _Node(f"{name}.{rel}")
    for name, typedef in typedefs.items():
        if typedef is None:  # pragma: no cover
            continue
        root = nodes[name]
        root.resource = typedef.kind == "resource"
        root.extension = name == "Extension"
        root.reference = name == "Reference"
        for rel, el in typedef.elements.items():
            parent_rel, _, leaf = rel.rpartition(".")
            parent = nodes[f"{name}.{parent_rel}"] if parent_rel else root
            max_ = -1 if el.max is None else el.max
            if el.content_reference is not None:
                field = _Field(leaf, "BackboneElement", _COMPLEX, el.is_array, max_)
                field.node = nodes[el.content_reference]
                variants = [field]
            elif el.choices:
                variants = []
                for json_name, type_name in el.choices.items():
                    field = _make_field(json_name, type_name, el, nodes=nodes, checks=checks)
                    field.choice = leaf
                    variants.append(field)
                parent.has_choices = True
            else:
                backbone = nodes[f"{name}.{rel}"] if el.backbone else None
                variants = [
                    _make_field(
                        leaf, el.types[0], el, nodes=nodes, checks=checks, backbone=backbone
                    )
                ]
            for field in variants:
                parent.fields[field.name] = field
            if el.min > 0:
                names: list[str] = []
                for field in variants:
                    names.append(field.name)
                    if field.kind == _PRIM and not field.system:
                        names.append("_" + field.name)
                display = leaf.replace("[x]", "") + ("[x]" if el.choices else "")
                parent.required.append((display, tuple(names)))
    resources = {name: nodes[name] for name in definitions.resource_types()}
    return _Schema(resources, nodes["Element"])


def _make_field(
    json_name: str,
    type_name: str,
    el: definitions.ElementDef,
    *,
    nodes: dict[str, _Node],
    checks: Mapping[str, _Check],
    backbone: _Node | None = None,
) -> _Field:
    max_ = -1 if el.max is None else el.max
    if backbone is not None:
        field = _Field(json_name, type_name, _COMPLEX, el.is_array, max_)
        field.node = backbone
    elif type_name in checks:
        field = _Field(json_name, type_name, _PRIM, el.is_array, max_)
        field.check = checks[type_name]
        field.system = el.system
        url = el.value_set
        if type_name == "code" and url is not None:
            codes = definitions.value_set_codes(url)
            if codes is None:  # pragma: no cover - the generator lists every value set it names
                raise LookupError(f"{el.path}: the definitions do not list value set {url}")
            field.check = _bound_check(field.check, url, codes)
    elif type_name == "Resource":
        field = _Field(json_name, type_name, _RESOURCE, el.is_array, max_)
    else:
        field = _Field(json_name, type_name, _COMPLEX, el.is_array, max_)
        field.node = nodes[type_name]
        if type_name == "Reference" and el.targets and "Resource" not in el.targets:
            field.targets = frozenset(el.targets)
    return field


# ----------------------------------------------------------------------------- walking


class _Walk:
    """One validation run: walks the resource, collecting issues."""

    __slots__ = ("conditional", "contained_ids", "issues", "schema")

    def __init__(self, schema: _Schema) -> None:
        self.schema = schema
        self.issues: list[Issue] = []
        # ids of the contained resources of the resource being walked, for "#id" references
        self.contained_ids: frozenset[str] = frozenset()
        # conditional references are allowed inside a transaction Bundle
        self.conditional = False

    def add(self, code: ErrorCode, diagnostics: str, expression: str) -> None:
        self.issues.append(Issue(code, diagnostics, expression))
        if len(self.issues) >= MAX_ISSUES:
            raise _Full

    # -- resources

    def resource(self, obj: Any, path: str, depth: int, contained: bool = False) -> None:
        if type(obj) is not dict:
            self.add(WRONG_TYPE, "Expected a JSON object holding a resource.", path)
            return
        rtype = obj.get("resourceType")
        if rtype is None:
            self.add(REQUIRED_MISSING, "The resource has no resourceType.", path)
            return
        node = self.schema.resources.get(rtype) if type(rtype) is str else None
        if node is None:
            self.add(UNKNOWN_RESOURCE_TYPE, "resourceType is not an R4 resource type.", path)
            return
        saved = self.contained_ids, self.conditional
        if contained:
            self._contained_rules(obj, path)
        else:
            self.contained_ids = _contained_ids(obj)
            self.conditional = saved[1] if rtype != "Bundle" else obj.get("type") == "transaction"
        try:
            self.object(node, obj, path, depth)
        finally:
            self.contained_ids, self.conditional = saved

    def _contained_rules(self, obj: dict[str, Any], path: str) -> None:
        if "contained" in obj:
            self.add(
                BUSINESS_RULE,
                "A contained resource cannot contain resources (dom-2).",
                f"{path}.contained",
            )
        meta = obj.get("meta")
        if type(meta) is dict:
            if "versionId" in meta or "lastUpdated" in meta:
                self.add(
                    BUSINESS_RULE,
                    "A contained resource has no meta.versionId or meta.lastUpdated (dom-4).",
                    f"{path}.meta",
                )
            if "security" in meta:
                self.add(
                    BUSINESS_RULE,
                    "A contained resource has no meta.security (dom-5).",
                    f"{path}.meta.security",
                )

    # -- objects

    def object(self, node: _Node, obj: dict[str, Any], path: str, depth: int) -> None:
        if not obj:
            self.add(BUSINESS_RULE, "Empty objects are not allowed (ele-1).", path)
            return
        if depth > MAX_DEPTH:
            self.add(NESTING_TOO_DEEP, "The resource nests too deeply.", path)
            return
        fields = node.fields
        choices: dict[str, str] | None = {} if node.has_choices else None
        deeper = depth + 1
        for key, value in obj.items():
            field = fields.get(key)
            if field is None:
                if type(key) is str and key[:1] == "_":
                    self.extension_sibling(
                        node=node,
                        obj=obj,
                        key=key,
                        value=value,
                        path=path,
                        depth=depth,
                        choices=choices,
                    )
                elif not (key == "resourceType" and node.resource):
                    self.add(UNKNOWN_ELEMENT, _unknown(key), _join(path, key))
                continue
            if choices is not None and field.choice is not None:
                self.choice(choices, field.choice, key, path)
            kind = field.kind
            if field.array:
                if type(value) is not list:
                    self.add(WRONG_TYPE, "Expected a JSON array.", _join(path, key))
                    continue
                if not value:
                    self.add(CARDINALITY, "Empty arrays are not allowed.", _join(path, key))
                    continue
                if 0 <= field.max < len(value):
                    self.add(CARDINALITY, f"At most {field.max} allowed.", _join(path, key))
                if kind == _PRIM:
                    self.primitive_array(field, value, obj.get("_" + key), path, key)
                elif kind == _COMPLEX:
                    child = field.node
                    for i, item in enumerate(value):
                        where = f"{path}.{key}[{i}]"
                        if type(item) is dict:
                            self.object(child, item, where, deeper)
                            if child.reference:
                                self.reference(item, where, field.targets)
                        else:
                            self.not_an_object(field, where)
                else:
                    for i, item in enumerate(value):
                        self.resource(item, f"{path}.{key}[{i}]", deeper, key == "contained")
            elif type(value) is list:
                self.add(WRONG_TYPE, "Expected a single value, not an array.", _join(path, key))
            elif field.max == 0:
                self.add(CARDINALITY, "This element is not allowed here.", _join(path, key))
            elif kind == _PRIM:
                problem = field.check(value)
                if problem is not None:
                    self.add(problem[0], problem[1], _join(path, key))
            elif kind == _COMPLEX:
                where = f"{path}.{key}"
                if type(value) is dict:
                    child = field.node
                    self.object(child, value, where, deeper)
                    if child.reference:
                        self.reference(value, where, field.targets)
                else:
                    self.not_an_object(field, where)
            else:
                self.resource(value, f"{path}.{key}", deeper, key == "contained")
        for display, names in node.required:
            for name in names:
                if name in obj:
                    break
            else:
                self.add(
                    REQUIRED_MISSING,
                    f"Required element '{display}' is missing.",
                    f"{path}.{display}",
                )
        if node.extension:
            self.extension_rule(obj, path)
        elif len(obj) == 1 and "id" in obj and not node.resource:
            self.add(BUSINESS_RULE, "An element needs a value or children (ele-1).", path)

    def not_an_object(self, field: _Field, path: str) -> None:
        self.add(WRONG_TYPE, f"Expected a JSON object for a FHIR {field.type}.", path)

    def choice(self, seen: dict[str, str], base: str, key: str, path: str) -> None:
        name = key.lstrip("_")
        other = seen.setdefault(base, name)
        if other != name:
            self.add(
                CARDINALITY,
                f"Only one form of {base} is allowed.",
                _join(path, name),
            )

    def primitive_array(
        self, field: _Field, values: list[Any], extensions: Any, path: str, key: str
    ) -> None:
        check = field.check
        aligned = type(extensions) is list and len(extensions) == len(values)
        for i, item in enumerate(values):
            if item is None:
                if aligned and extensions[i] is not None:
                    continue
                self.add(
                    WRONG_TYPE,
                    "null is only allowed in an array when _element has an entry there.",
                    f"{path}.{key}[{i}]",
                )
                continue
            problem = check(item)
            if problem is not None:
                self.add(problem[0], problem[1], f"{path}.{key}[{i}]")

    def extension_sibling(
        self,
        *,
        node: _Node,
        obj: dict[str, Any],
        key: str,
        value: Any,
        path: str,
        depth: int,
        choices: dict[str, str] | None,
    ) -> None:
        """``_birthDate``: the id and extensions of a primitive element (json.html#primitive)."""
        name = key[1:]
        field = node.fields.get(name)
        where = _join(path, key)
        if field is None or field.kind != _PRIM or field.system:
            self.add(UNKNOWN_ELEMENT, _unknown(key), where)
            return
        if choices is not None and field.choice is not None:
            self.choice(choices, field.choice, key, path)
        element = self.schema.element
        if not field.array:
            if type(value) is not dict:
                self.add(WRONG_TYPE, "Expected a JSON object.", where)
                return
            self.object(element, value, where, depth + 1)
            return
        if type(value) is not list:
            self.add(WRONG_TYPE, "Expected a JSON array.", where)
            return
        if not value:
            self.add(CARDINALITY, "Empty arrays are not allowed.", where)
            return
        primitives = obj.get(name)
        if primitives is not None and (
            type(primitives) is not list or len(primitives) != len(value)
        ):
            self.add(
                CARDINALITY,
                f"{key} must have as many entries as {name}.",
                where,
            )
            return
        for i, item in enumerate(value):
            if item is None:
                if primitives is None:
                    self.add(WRONG_TYPE, "Expected a JSON object.", f"{where}[{i}]")
                continue
            if type(item) is not dict:
                self.add(WRONG_TYPE, "Expected a JSON object or null.", f"{where}[{i}]")
                continue
            self.object(element, item, f"{where}[{i}]", depth + 1)

    # -- rules on particular types

    def extension_rule(self, obj: dict[str, Any], path: str) -> None:
        has_value = any(k.startswith(("value", "_value")) for k in obj)
        if has_value == ("extension" in obj):
            self.add(
                BUSINESS_RULE,
                "An extension has either a value or nested extensions, not both (ext-1).",
                path,
            )

    def reference(self, obj: dict[str, Any], path: str, targets: frozenset[str] | None) -> None:
        """``Reference.reference``: its literal form (references.html#literal) and target type."""
        literal = obj.get("reference")
        if type(literal) is not str or not literal:
            return  # a wrong type or an empty string was reported by the primitive check
        where = f"{path}.reference"
        parsed = parse_reference(literal)
        if parsed is None:
            self.add(BAD_REFERENCE, "The reference is not in any form FHIR R4 allows.", where)
            return
        kind = parsed.kind
        rtype = parsed.type
        known = rtype is not None and definitions.is_resource_type(rtype)
        if kind is ReferenceKind.RELATIVE or kind is ReferenceKind.CONDITIONAL:
            if not known:
                self.add(BAD_REFERENCE, "The reference names an unknown resource type.", where)
                return
            if kind is ReferenceKind.CONDITIONAL and not self.conditional:
                self.add(
                    BAD_REFERENCE,
                    "Conditional references are only allowed inside a transaction.",
                    where,
                )
                return
        elif kind is ReferenceKind.LOCAL:
            if parsed.id is not None and parsed.id not in self.contained_ids:
                self.add(
                    BAD_REFERENCE,
                    "The local reference names no contained resource (ref-1).",
                    where,
                )
            return
        # An absolute URL whose tail is not a known type is some other URL: nothing to check.
        if targets is not None and known and rtype not in targets:
            allowed = ", ".join(sorted(targets))
            self.add(
                BAD_REFERENCE,
                f"A reference to {rtype} is not allowed here (allowed: {allowed}).",
                where,
            )


def _contained_ids(obj: dict[str, Any]) -> frozenset[str]:
    contained = obj.get("contained")
    if type(contained) is not list:
        return frozenset()
    ids = set()
    for item in contained:
        if type(item) is dict:
            cid = item.get("id")
            if type(cid) is str:
                ids.add(cid)
    return frozenset(ids)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if type(key) is str and _ELEMENT_NAME.fullmatch(key) else path


def _unknown(key: Any) -> str:
    if type(key) is str and _ELEMENT_NAME.fullmatch(key):
        return f"Unknown element '{key}'."
    return "Unknown element (its name is not shown because it is not shaped like one)."


# ----------------------------------------------------------------------------- entry points


def collect_issues(resource: Any, *, allow_conditional_references: bool = False) -> list[Issue]:
    """Every structural problem of ``resource`` (at most :data:`MAX_ISSUES`), without raising.

    ``allow_conditional_references`` accepts ``Type?query`` references, for a resource taken
    out of a transaction Bundle before the server resolves them (transaction.html).
    """
    walk = _Walk(_schema())
    walk.conditional = allow_conditional_references
    rtype = resource.get("resourceType") if type(resource) is dict else None
    path = rtype if type(rtype) is str and definitions.is_resource_type(rtype) else "Resource"
    with contextlib.suppress(_Full):
        walk.resource(resource, path, 0)
    return walk.issues


def validate_resource(
    resource: Mapping[str, Any],
    *,
    resource_type: str | None = None,
    allow_conditional_references: bool = False,
) -> None:
    """Validate a parsed FHIR R4 JSON resource; raise ``HearthError`` if it is not valid.

    Raises ``MISSING_RESOURCE_TYPE`` if the root has no ``resourceType``, ``TYPE_MISMATCH`` if
    ``resource_type`` is given and differs from it, and otherwise ``INVALID_RESOURCE`` with one
    :class:`~hearth.domain.Issue` per problem (validation.html#structure).
    """
    if not isinstance(resource, Mapping):
        raise HearthError(INVALID_RESOURCE, "A FHIR resource must be a JSON object.")
    rtype = resource.get("resourceType")
    if rtype is None:
        raise HearthError(MISSING_RESOURCE_TYPE)
    if resource_type is not None and rtype != resource_type:
        raise HearthError(TYPE_MISMATCH)
    body = resource if type(resource) is dict else dict(resource)
    issues = collect_issues(body, allow_conditional_references=allow_conditional_references)
    if issues:
        noun = "issue" if len(issues) == 1 else "issues"
        more = " (stopped at the limit)" if len(issues) >= MAX_ISSUES else ""
        raise HearthError(
            INVALID_RESOURCE,
            f"The resource is not valid FHIR R4: {len(issues)} {noun}{more}.",
            issues=tuple(issues),
        )
