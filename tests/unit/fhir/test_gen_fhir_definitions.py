"""scripts/gen_fhir_definitions.py: the pure parts of the generator (no download here)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gen_fhir_definitions.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_fhir_definitions", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_dump_is_deterministic_and_canonical(gen: ModuleType) -> None:
    a = gen.dump({"b": [1, {"z": 1, "a": "é"}], "a": None})
    b = gen.dump({"a": None, "b": [1, {"a": "é", "z": 1}]})
    assert a == b
    assert a[4:8] == b"\x00\x00\x00\x00"  # gzip mtime is zero
    assert json.loads(gzip.decompress(a)) == {"a": None, "b": [1, {"a": "é", "z": 1}]}


def test_split_union_respects_parentheses_and_quotes(gen: ModuleType) -> None:
    expression = "A.b | (C.d as X) | E.f.where(g = 'x|y') | H.i.where(j | k)"
    assert gen.split_union(expression) == [
        "A.b",
        "(C.d as X)",
        "E.f.where(g = 'x|y')",
        "H.i.where(j | k)",
    ]


def test_expression_for_keeps_each_base_its_own_branches(gen: ModuleType) -> None:
    expression = "Observation.subject | (Condition.code as CodeableConcept) | Resource.id"
    bases = ["Observation", "Condition"]
    assert (
        gen.expression_for(expression, "Observation", bases) == "Observation.subject | Resource.id"
    )
    assert (
        gen.expression_for(expression, "Condition", bases)
        == "(Condition.code as CodeableConcept) | Resource.id"
    )
    assert gen.expression_for(None, "Condition", bases) is None
    assert gen.expression_for("X.y", "X", ["X"]) == "X.y"


def test_build_type_expands_choices_and_marks_backbones(gen: ModuleType) -> None:
    sd = {
        "type": "Thing",
        "kind": "resource",
        "snapshot": {
            "element": [
                {"path": "Thing", "min": 0, "max": "*"},
                {
                    "path": "Thing.id",
                    "min": 0,
                    "max": "1",
                    "type": [{"code": "http://hl7.org/fhirpath/System.String"}],
                },
                {
                    "path": "Thing.value[x]",
                    "min": 1,
                    "max": "1",
                    "type": [
                        {"code": "string"},
                        {"code": "Quantity", "profile": [gen.SD_PREFIX + "SimpleQuantity"]},
                    ],
                },
                {"path": "Thing.part", "min": 0, "max": "*", "type": [{"code": "BackboneElement"}]},
                {
                    "path": "Thing.part.who",
                    "min": 1,
                    "max": "1",
                    "type": [{"code": "Reference", "targetProfile": [gen.SD_PREFIX + "Patient"]}],
                },
                {
                    "path": "Thing.part.part",
                    "min": 0,
                    "max": "*",
                    "contentReference": "#Thing.part",
                },
            ]
        },
    }
    elements = gen.build_type(sd)
    assert elements["id"] == {"min": 0, "max": 1, "types": ["id"], "system": True}
    assert elements["value[x]"]["choices"] == {
        "valueString": "string",
        "valueQuantity": "SimpleQuantity",
    }
    assert elements["part"]["backbone"] is True
    assert elements["part"]["max"] == -1
    assert elements["part.who"]["targets"] == ["Patient"]
    assert elements["part.part"] == {"min": 0, "max": -1, "ref": "Thing.part"}


def test_read_package_refuses_an_unexpected_tarball(gen: ModuleType) -> None:
    with pytest.raises(SystemExit, match="SHA-256"):
        gen.read_package(b"not the package")


def test_committed_data_matches_the_generator_format() -> None:
    data = Path(__file__).resolve().parents[3] / "src" / "hearth" / "fhir" / "data"
    structures = json.loads(gzip.decompress((data / "structures.json.gz").read_bytes()))
    assert structures["fhirVersion"] == "4.0.1"
    assert "CC0" in structures["source"]
    value_sets = structures["valueSets"]
    assert len(value_sets) == 211
    assert all(codes == sorted(set(codes)) for codes in value_sets.values())
    total = sum(p.stat().st_size for p in data.glob("*.json.gz"))
    assert total < 300_000  # the brief: a few hundred KB at most


# ----------------------------------------------------------------------------- required bindings

CS = "http://example.org/cs/"
VS = "http://example.org/vs/"


def package(*resources: dict[str, object]) -> dict[str, bytes]:
    return {
        f"{r['resourceType']}-{i}.json": json.dumps(r).encode() for i, r in enumerate(resources)
    }


def code_system(name: str, *concepts: object, **extra: object) -> dict[str, object]:
    return {
        "resourceType": "CodeSystem",
        "url": CS + name,
        "content": "complete",
        "concept": list(concepts),
        **extra,
    }


def value_set(
    name: str, include: list[object], exclude: list[object] | None = None
) -> dict[str, object]:
    compose: dict[str, object] = {"include": include}
    if exclude:
        compose["exclude"] = exclude
    return {"resourceType": "ValueSet", "url": VS + name, "compose": compose}


@pytest.fixture
def terminology(gen: ModuleType) -> Any:
    files = package(
        code_system("colour", {"code": "red"}, {"code": "blue", "concept": [{"code": "navy"}]}),
        code_system("partial", {"code": "a"}, content="fragment"),
        code_system("loose", {"code": "a"}, caseSensitive=False),
        value_set("all", [{"system": CS + "colour"}]),
        value_set("some", [{"system": CS + "partial", "concept": [{"code": "a"}, {"code": "b"}]}]),
        value_set(
            "minus",
            [{"system": CS + "colour"}],
            [{"system": CS + "colour", "concept": [{"code": "red"}]}],
        ),
        value_set(
            "import",
            [{"valueSet": [VS + "all|4.0.1"]}, {"system": "urn:x", "concept": [{"code": "x"}]}],
        ),
        value_set("both", [{"system": CS + "colour", "valueSet": [VS + "minus"]}]),
        value_set(
            "filtered",
            [
                {
                    "system": CS + "colour",
                    "filter": [{"property": "concept", "op": "is-a", "value": "blue"}],
                }
            ],
        ),
        value_set("fragment", [{"system": CS + "partial"}]),
        value_set("external", [{"system": "urn:ietf:bcp:13"}]),
        value_set("loose", [{"system": CS + "loose"}]),
        value_set("cycle", [{"valueSet": [VS + "cycle"]}]),
        value_set("bad-import", [{"valueSet": [VS + "external"]}]),
    )
    return gen.Terminology(files)


@pytest.mark.parametrize(
    ("name", "codes"),
    [
        ("all", {"red", "blue", "navy"}),  # a whole complete system, nested concepts included
        ("some", {"a", "b"}),  # explicit concepts, whatever the system's content
        ("minus", {"blue", "navy"}),  # compose.exclude
        ("import", {"red", "blue", "navy", "x"}),  # valueSet imports, |version stripped
        ("both", {"blue", "navy"}),  # a system and a value set in one include: intersection
    ],
)
def test_enumerable_value_sets(terminology: Any, name: str, codes: set[str]) -> None:
    assert terminology.expand(VS + name) == codes


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("filtered", "filter"),
        ("fragment", "content is fragment"),
        ("external", "not in the package: urn:ietf:bcp:13"),
        ("loose", "not case-sensitive"),
        ("cycle", "imports itself"),
        ("bad-import", "not in the package"),
        ("missing", "value set not in the package"),
    ],
)
def test_value_sets_that_cannot_be_enumerated(
    gen: ModuleType, terminology: Any, name: str, reason: str
) -> None:
    with pytest.raises(gen.NotEnumerable, match=reason):
        terminology.expand(VS + name)


def test_only_required_code_bindings_are_recorded(gen: ModuleType, terminology: Any) -> None:
    def el(path: str, type_code: str, strength: str, vs: str) -> dict[str, object]:
        return {
            "path": path,
            "min": 0,
            "max": "1",
            "type": [{"code": type_code}],
            "binding": {"strength": strength, "valueSet": VS + vs + "|4.0.1"},
        }

    sd = {
        "type": "Thing",
        "id": "Thing",
        "kind": "resource",
        "snapshot": {
            "element": [
                {"path": "Thing", "min": 0, "max": "*"},
                el("Thing.colour", "code", "required", "all"),
                el("Thing.mime", "code", "required", "external"),
                el("Thing.hint", "code", "preferred", "all"),
                el("Thing.coded", "CodeableConcept", "required", "all"),
            ]
        },
    }
    elements = gen.build_type(sd, terminology)
    assert elements["colour"]["valueSet"] == VS + "all"
    assert "valueSet" not in elements["mime"]
    assert "valueSet" not in elements["hint"]
    assert "valueSet" not in elements["coded"]
    assert terminology.checked == ["Thing.colour"]
    assert terminology.skipped == {
        "Thing.mime": (VS + "external", "code system not in the package: urn:ietf:bcp:13")
    }
    assert terminology.coded == 1
    assert terminology.used == {VS + "all"}
