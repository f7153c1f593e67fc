"""scripts/gen_fhir_definitions.py: the pure parts of the generator (no download here)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

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
    total = sum(p.stat().st_size for p in data.glob("*.json.gz"))
    assert total < 300_000  # the brief: a few hundred KB at most
