"""``hearth import`` of NDJSON and Synthea-shaped Bundles; ``hearth reindex``; bounded memory."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import orjson
from click.testing import CliRunner

from hearth.cli import main
from hearth.fhir.search import Context, parse_search
from tests.support import Instance, admin
from tests.synthea import patient_bundle, provider_pool


def run(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.output


def search_total(instance: Instance, res_type: str, *params: tuple[str, str]) -> int:
    request = parse_search(
        res_type, list(params), ctx=Context(now_us=0), default_count=10, max_count=10
    )
    total = instance.container.repository(admin()).search(request).total
    assert total is not None
    return total


def test_import_ndjson_keeps_ids_and_references(sqlite_instance: Instance, tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    lines = [
        {"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"Bulk{i}"}]}
        for i in range(30)
    ] + [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{i % 30}"},
            "valueQuantity": {"value": 60 + i},
        }
        for i in range(60)
    ]
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n\n")
    code, out = run(sqlite_instance.home, "import", str(path), "--chunk", "25", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["written"] == 90
    assert search_total(sqlite_instance, "Observation", ("subject", "Patient/p7")) == 2
    assert (
        search_total(
            sqlite_instance, "Patient", ("_has:Observation:subject:value-quantity", "gt115")
        )
        == 4
    )
    # Importing again updates in place: no duplicates.
    code, out = run(sqlite_instance.home, "import", str(path), "--json")
    assert code == 0, out
    assert search_total(sqlite_instance, "Patient", ("family", "bulk")) == 30


def test_import_synthea_bundles_from_files(sqlite_instance: Instance, tmp_path: Path) -> None:
    rng = random.Random(11)
    providers = provider_pool(rng, 2)
    for i in range(3):
        made = patient_bundle(rng, providers, encounters=2, observations_per_encounter=3)
        (tmp_path / f"patient{i}.json").write_bytes(orjson.dumps(made.bundle))
        code, out = run(
            sqlite_instance.home, "import", str(tmp_path / f"patient{i}.json"), "--json"
        )
        assert code == 0, out
    assert search_total(sqlite_instance, "Patient") == 3
    assert search_total(sqlite_instance, "Observation") == 3 * 2 * 3
    assert 1 <= search_total(sqlite_instance, "Practitioner") <= 2
    assert search_total(sqlite_instance, "Observation", ("subject:Patient.name", made.family)) >= 6
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"resourceType":"Bundle","entry":[{"resource":')
    code, out = run(sqlite_instance.home, "import", str(broken))
    assert code != 0
    assert "HRT-0911" in out or "not valid JSON" in out
    code, out = run(sqlite_instance.home, "reindex", "--json")
    assert code == 0, out
    assert json.loads(out)["indexed"] >= 3 + 18


def test_memory_stays_bounded_on_a_large_bundle(sqlite_instance: Instance, tmp_path: Path) -> None:
    """A Bundle is streamed: peak memory is a small fraction of the file's size."""
    path = tmp_path / "big.json"
    filler = "x" * 10_000  # large resources make the file big without taking long to store
    with path.open("wb") as out:
        out.write(b'{"resourceType":"Bundle","type":"transaction","entry":[')
        for i in range(1500):
            entry = {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": {
                    "resourceType": "Basic",
                    "code": {"text": filler},
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"},
                },
                "request": {"method": "POST", "url": "Basic"},
            }
            out.write((b"," if i else b"") + orjson.dumps(entry))
        out.write(b"]}")
    size = path.stat().st_size
    importer = sqlite_instance.container.importer(
        sqlite_instance.container.system_principal("import"), chunk=50
    )
    warm = tmp_path / "warm.json"  # loads the R4 definitions, which stay cached: not the file
    warm.write_bytes(
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
        b'{"resourceType":"Basic","code":{"text":"w"}},"request":{"method":"POST","url":"Basic"}}]}'
    )
    importer.import_path(warm)
    tracemalloc.start()
    try:
        report = importer.import_path(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.resources == 1500
    assert size > 15_000_000
    assert peak < size / 4, (peak, size)
