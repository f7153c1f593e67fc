"""The subset of FHIRPath that R4 SearchParameter expressions use, compiled to Python.

R4 search parameters name the values they index with FHIRPath (fhirpath.html, N1). The 1,700
official expressions use only: paths (``Patient.name.family``), unions (``|``), type filters
(``x as T``, ``x.as(T)``, ``x.ofType(T)``), ``where(resolve() is T)``, ``where(f = 'literal')``,
``where(hasExtension('url'))``, ``extension('url')``, an index (``entry[0]``) and one boolean
(``Patient.deceased.exists() and Patient.deceased != false``). Each expression is compiled once
into a list of branches, each a list of small steps over the JSON form of a resource; this is
much faster than interpreting FHIRPath per resource, and anything outside the subset is refused
at compile time (``UnsupportedExpression``) rather than evaluated wrongly.

A node is ``(value, type)``: the JSON value and, where the JSON says it, its FHIR type (the
suffix of a choice element such as ``valueQuantity``), else ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Compiled", "Node", "UnsupportedExpression", "compile_expression", "reference_type"]

Node = tuple[Any, str | None]
Step = Callable[[Iterable[Node]], Iterator[Node]]


class UnsupportedExpression(ValueError):
    """An expression outside the subset this module compiles."""


_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def reference_type(reference: Any) -> str | None:
    """The resource type a Reference points at: from ``reference`` or, failing that, ``type``."""
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str):
        match = _REF_TYPE.search(literal)
        if match is not None:
            return match.group(1)
    kind = reference.get("type")
    return kind if isinstance(kind, str) else None


def _children(value: Any, name: str) -> Iterator[Node]:
    if not isinstance(value, dict):
        return
    if name in value:
        found = value[name]
        if isinstance(found, list):
            for item in found:
                if item is not None:
                    yield item, None
        elif found is not None:
            yield found, None
        return
    # A choice element (``value[x]``) the definitions did not name: JSON calls it
    # ``valueQuantity``, ``valueString``...
    for key, found in value.items():
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            kind = _norm_type(key[len(name) :])
            if isinstance(found, list):
                for item in found:
                    yield item, kind
            else:
                yield found, kind


def _choice_children(value: Any, choices: Mapping[str, str]) -> Iterator[Node]:
    if not isinstance(value, dict):
        return
    for key, kind in choices.items():
        found = value.get(key)
        if found is None:
            continue
        if isinstance(found, list):
            for item in found:
                yield item, kind
        else:
            yield found, kind


# Primitive type names appear capitalised in choice element names (``valueDateTime``).
_PRIMITIVE_CAPS = frozenset(
    {
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
    }
)


def _lower(kind: str) -> str:
    return kind[0].lower() + kind[1:]


def _norm_type(name: str) -> str:
    return _lower(name) if name in _PRIMITIVE_CAPS else name


def _field(name: str, choices: Mapping[str, str] | None = None) -> Step:
    """Step into ``name``. ``choices`` is the choice element's JSON names and types when the
    definitions know them, an empty mapping for a plain element, ``None`` when unknown."""
    if choices:
        chosen = dict(choices)

        def choice_step(nodes: Iterable[Node]) -> Iterator[Node]:
            for value, _kind in nodes:
                yield from _choice_children(value, chosen)

        return choice_step
    if choices is None:

        def any_step(nodes: Iterable[Node]) -> Iterator[Node]:
            for value, _kind in nodes:
                yield from _children(value, name)

        return any_step

    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, _kind in nodes:
            if isinstance(value, dict):
                found = value.get(name)
                if found is None:
                    continue
                if isinstance(found, list):
                    for item in found:
                        if item is not None:
                            yield item, None
                else:
                    yield found, None

    return step


def _index(n: int) -> Step:
    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for i, node in enumerate(nodes):
            if i == n:
                yield node
                return

    return step


def _as_type(type_name: str) -> Step:
    wanted = _norm_type(type_name)

    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, kind in nodes:
            if kind == wanted or (kind is None and _shape_is(value, wanted)):
                yield value, wanted

    return step


def _shape_is(value: Any, wanted: str) -> bool:
    # Only a choice element tells its type in JSON; a non-choice element was typed by the
    # definition, which the compiler already checked, so a plain value passes a type filter
    # only when its JSON shape cannot be anything else.
    if wanted == "string":
        return isinstance(value, str)
    if wanted == "boolean":
        return isinstance(value, bool)
    if wanted == "Reference":
        return isinstance(value, dict) and ("reference" in value or "identifier" in value)
    return False


def _where_resolve_is(type_name: str) -> Step:
    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, kind in nodes:
            if reference_type(value) == type_name:
                yield value, kind

    return step


def _where_equals(name: str, literal: str) -> Step:
    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, kind in nodes:
            if isinstance(value, dict) and value.get(name) == literal:
                yield value, kind

    return step


def _has_extension(url: str) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        return any(
            isinstance(e, dict) and e.get("url") == url for e in value.get("extension") or ()
        )

    return test


def _where_has_extension(url: str) -> Step:
    test = _has_extension(url)

    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, kind in nodes:
            if test(value):
                yield value, kind

    return step


def _extension(url: str) -> Step:
    def step(nodes: Iterable[Node]) -> Iterator[Node]:
        for value, _kind in nodes:
            if isinstance(value, dict):
                for ext in value.get("extension") or ():
                    if isinstance(ext, dict) and ext.get("url") == url:
                        yield ext, "Extension"

    return step


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression: call it with a resource to get the nodes it selects."""

    source: str
    branches: tuple[tuple[Step, ...], ...]
    paths: tuple[str, ...]  # each branch's element path with filters removed, for typing
    boolean: bool = False  # the ``exists() and != false`` form: yields one boolean node
    types: tuple[str | None, ...] = ()  # each branch's FHIR type where the definitions say
    #: top-level keys at least one of which a resource needs for any branch to select
    #: something (``None``: cannot be told, always evaluate)
    keys: frozenset[str] | None = None

    def with_types(self, type_of: Callable[[str], str | None]) -> Compiled:
        """A copy whose nodes carry the type ``type_of(path)`` gives each branch's path."""
        return Compiled(
            self.source,
            self.branches,
            self.paths,
            self.boolean,
            tuple(type_of(p) for p in self.paths),
            self.keys,
        )

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        out: list[Node] = []
        for i, steps in enumerate(self.branches):
            nodes: Iterable[Node] = ((resource, None),)
            for step in steps:
                nodes = step(nodes)
            known = self.types[i] if i < len(self.types) else None
            if known is None:
                out.extend(nodes)
            else:
                out.extend((value, kind or known) for value, kind in nodes)
        if self.boolean:
            present = [v for v, _k in out if v is not None]
            return [(bool(present) and all(v is not False for v in present), "boolean")]
        return out


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _strip_parens(text: str) -> str:
    """Remove parentheses that enclose the whole of ``text``."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i < len(text) - 1:
                return text  # the first "(" closes before the end: not an enclosing pair
        text = text[1:-1].strip()
    return text


_CALL = re.compile(r"([A-Za-z]+)\((.*)\)$", re.S)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")
_INDEXED = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\[(\d+)\]$")
_WHERE_EQ = re.compile(r"([A-Za-z]+)\s*=\s*'([^']*)'$")
_RESOLVE_IS = re.compile(r"resolve\(\)\s+is\s+([A-Za-z]+)$")
_QUOTED = re.compile(r"'([^']*)'$")


ChoicesOf = Callable[[str], Mapping[str, str] | None]


def _unknown(_path: str) -> Mapping[str, str] | None:
    return None


def first_keys(text: str, choices_of: ChoicesOf) -> frozenset[str] | None:
    """The top-level JSON keys a branch can start from, or ``None`` if it cannot be told."""
    text = _strip_parens(_split_top(_strip_parens(text), " as ")[0])
    segments = _split_top(text, ".")
    if len(segments) >= 2 and segments[1].startswith("extension("):
        return frozenset({"extension"})
    if len(segments) < 2 or _CALL.match(segments[1]):
        return None
    name = segments[1].split("[", 1)[0]
    choices = choices_of(f"{segments[0]}.{name}")
    if choices is None:
        return None
    return frozenset(choices) if choices else frozenset({name})


def _compile_branch(
    text: str, root_types: Sequence[str], choices_of: ChoicesOf
) -> tuple[tuple[Step, ...], str]:
    text = _strip_parens(text)
    as_parts = _split_top(text, " as ")
    if len(as_parts) == 2:
        inner, inner_path = _compile_branch(as_parts[0], root_types, choices_of)
        return (*inner, _as_type(as_parts[1])), f"{inner_path}|{_norm_type(as_parts[1])}"
    if len(as_parts) > 2:
        raise UnsupportedExpression(text)
    segments = _split_top(text, ".")
    if not segments or segments[0] not in root_types:
        raise UnsupportedExpression(text)
    path = segments[0]
    steps: list[Step] = []
    for segment in segments[1:]:
        call = _CALL.match(segment)
        if call is None:
            indexed = _INDEXED.match(segment)
            if indexed is not None:
                steps += [
                    _field(indexed[1], choices_of(path + "." + indexed[1])),
                    _index(int(indexed[2])),
                ]
                path += "." + indexed[1]
                continue
            if not _NAME.match(segment):
                raise UnsupportedExpression(text)
            steps.append(_field(segment, choices_of(path + "." + segment)))
            path += "." + segment
            continue
        name, arg = call[1], call[2].strip()
        if name in ("as", "ofType") and _NAME.match(arg):
            steps.append(_as_type(arg))
            path += "|" + _norm_type(arg)
        elif name == "where" and (m := _RESOLVE_IS.match(arg)) is not None:
            steps.append(_where_resolve_is(m[1]))
        elif name == "where" and (m := _WHERE_EQ.match(arg)) is not None:
            steps.append(_where_equals(m[1], m[2]))
        elif name == "where" and (m := _CALL.match(arg)) and m[1] == "hasExtension":
            url = _QUOTED.match(m[2].strip())
            if url is None:
                raise UnsupportedExpression(text)
            steps.append(_where_has_extension(url[1]))
        elif name == "extension" and (m := _QUOTED.match(arg)) is not None:
            steps.append(_extension(m[1]))
            path += ".extension"
        else:
            raise UnsupportedExpression(text)
    return tuple(steps), path


_BOOLEAN_FORM = re.compile(r"([A-Za-z.]+)\.exists\(\)\s+and\s+\1\s*!=\s*false$")


def compile_expression(
    expression: str, resource_type: str, choices_of: ChoicesOf = _unknown
) -> Compiled:
    """Compile ``expression`` for resources of ``resource_type``.

    Branches rooted at another type (a multi-base expression) are dropped; ``Resource`` and
    ``DomainResource`` roots apply to every type. ``choices_of(path)`` tells, for an element
    path, the JSON names of a choice element, an empty mapping for a plain element, or ``None``
    when unknown (then any ``nameType`` key is taken as a choice).
    """
    roots = (resource_type, "Resource", "DomainResource")
    boolean = _BOOLEAN_FORM.match(expression.strip())
    if boolean is not None:
        steps, path = _compile_branch(boolean[1], roots, choices_of)
        return Compiled(expression, (steps,), (path,), boolean=True)
    branches: list[tuple[Step, ...]] = []
    paths: list[str] = []
    keys: set[str] | None = set()
    for raw in _split_top(expression, "|"):
        part = raw
        head = _strip_parens(part).split(".", 1)[0].split(" ", 1)[0]
        if head[:1].islower():
            # R4 writes a few expressions without their root (InsurancePlan-name is
            # ``name | alias``); FHIRPath evaluates those against the resource itself.
            part, head = f"{resource_type}.{_strip_parens(part)}", resource_type
        if head not in roots:
            continue
        steps, path = _compile_branch(part, roots, choices_of)
        branches.append(steps)
        paths.append(path)
        found = first_keys(part, choices_of)
        keys = None if found is None or keys is None else keys | found
    if not branches:
        raise UnsupportedExpression(expression)
    return Compiled(
        expression,
        tuple(branches),
        tuple(paths),
        keys=frozenset(keys) if keys is not None else None,
    )
