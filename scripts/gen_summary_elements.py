"""Generate ``src/hearth/fhir/data/summary.json.gz``: the summary elements of each R4 resource.

``_summary=true`` returns the elements the R4 StructureDefinitions mark ``isSummary``
(search.html#summary). This script reads them from the same official package as
``gen_fhir_definitions.py`` (``hl7.fhir.r4.core`` 4.0.1, CC0) and writes, for each resource type,
the top-level element names (choice elements expanded to their JSON names). Run it from the
repository root: ``python scripts/gen_summary_elements.py``.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fhir_definitions import fetch_tarball, read_package

OUT = (
    Path(__file__).resolve().parent.parent / "src" / "hearth" / "fhir" / "data" / "summary.json.gz"
)


def _capital(name: str) -> str:
    return name[0].upper() + name[1:]


def build(files: dict[str, bytes]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, raw in sorted(files.items()):
        if not name.startswith("StructureDefinition-"):
            continue
        sd = orjson.loads(raw)
        if (
            sd.get("kind") != "resource"
            or sd.get("abstract")
            or sd.get("derivation") != "specialization"
        ):
            continue
        res_type = sd["type"]
        names: set[str] = set()
        for element in sd.get("snapshot", {}).get("element", []):
            path = element["path"]
            parts = path.split(".")
            if len(parts) != 2 or not element.get("isSummary"):
                continue
            field = parts[1]
            if field.endswith("[x]"):
                stem = field[:-3]
                names.update(stem + _capital(t["code"]) for t in element.get("type", []))
            else:
                names.add(field)
        out[res_type] = sorted(names)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = read_package(fetch_tarball(Path(tmp)))
    table = build(files)
    OUT.write_bytes(
        gzip.compress(
            orjson.dumps({"fhirVersion": "4.0.1", "summary": table}, option=orjson.OPT_SORT_KEYS),
            mtime=0,
        )
    )
    print(f"wrote {OUT} ({len(table)} resource types)")


if __name__ == "__main__":
    main()
