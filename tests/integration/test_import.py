"""``hearth import`` of NDJSON and Synthea-shaped Bundles; ``hearth reindex``; bounded memory."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson

from hearth.fhir.search import Context, parse_search
from tests.support import Instance, admin, cli
from tests.synthea import patient_bundle, provider_pool

run = cli


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


MARKER = "Qwertyzuiop"  # a planted name: it must never come back in an error


def ndjson(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def raw_rows(instance: Instance, sql: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with instance.container.store.db.read.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def versions(instance: Instance, res_type: str, res_id: str) -> int:
    stored = instance.container.repository(admin()).read(res_type, res_id)
    return stored.version


def test_importing_again_matches_instead_of_duplicating(instance: Instance, tmp_path: Path) -> None:
    """Records are keyed by id, identifier or urn:uuid fullUrl; unchanged ones are not rewritten;
    records with no key are created again and counted as unkeyed (docs/design.md)."""
    records: list[dict[str, object]] = [
        {"resourceType": "Patient", "id": f"k{i}", "name": [{"family": f"Keyed{i}"}]}
        for i in range(4)
    ]
    records += [
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:example:mrn", "value": f"M|{i},x"}],
            "name": [{"family": "Byident"}],
        }
        for i in range(3)
    ]
    records += [{"resourceType": "Basic", "code": {"text": "no key at all"}}]
    path = ndjson(tmp_path / "mixed.ndjson", records)
    code, out = run(instance.home, "import", str(path), "--json", "--chunk", "3")
    assert code == 0, out
    first = json.loads(out)
    assert (first["created"], first["unchanged"], first["existing"], first["unkeyed"]) == (
        8,
        0,
        0,
        1,
    )

    if instance.container.store.db.dialect == "postgresql":
        analyzed = raw_rows(
            instance,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'search_hash' "
            "AND last_analyze IS NOT NULL",
        )
        assert analyzed == [(1,)]  # hearth import refreshed the planner's statistics

    code, out = run(instance.home, "import", str(path), "--json")
    assert code == 0, out
    again = json.loads(out)
    assert (again["written"], again["unchanged"], again["existing"], again["unkeyed"]) == (
        1,
        4,
        3,
        1,
    )
    assert search_total(instance, "Patient", ("family", "keyed")) == 4
    assert search_total(instance, "Patient", ("family", "byident")) == 3
    assert search_total(instance, "Basic") == 2  # the unkeyed record, created again
    assert versions(instance, "Patient", "k0") == 1  # unchanged: no new version

    records[0] = {**records[0], "active": True}
    code, out = run(instance.home, "import", str(ndjson(path, records)), "--json")
    assert json.loads(out)["updated"] == 1
    assert versions(instance, "Patient", "k0") == 2
    code, out = run(instance.home, "import", str(path))
    assert code == 0, out
    assert (
        "had no id, urn:uuid fullUrl or identifier; importing this file again would create it again"
        in out
    ), out

    rng = random.Random(5)
    made = patient_bundle(rng, provider_pool(rng, 2), encounters=2, observations_per_encounter=3)
    bundle = tmp_path / "synthea.json"
    bundle.write_bytes(orjson.dumps(made.bundle))
    code, out = run(instance.home, "import", str(bundle), "--json")
    assert code == 0, out
    entries = json.loads(out)["entries"]
    code, out = run(instance.home, "import", str(bundle), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["written"] == 0
    assert report["unchanged"] + report["existing"] == entries
    assert search_total(instance, "Observation") == 2 * 3
    assert search_total(instance, "Patient", ("family", made.family)) == 1


def test_one_chunk_writes_a_record_its_earlier_lines_created_or_deleted(
    instance: Instance, tmp_path: Path
) -> None:
    """A chunk looks up its records' current versions before writing (one statement, not one
    per record); a record an earlier line of the same chunk wrote must be seen as written."""
    repo = instance.container.repository(admin())
    repo.create({"resourceType": "Patient", "name": [{"family": "Gone"}]}, res_id="gone")
    repo.delete("Patient", "gone")
    records: list[dict[str, object]] = [
        {"resourceType": "Patient", "id": "twice", "name": [{"family": "First"}]},
        {"resourceType": "Patient", "id": "gone", "name": [{"family": "Back"}]},
        {"resourceType": "Patient", "id": "twice", "name": [{"family": "Second"}]},
        {"resourceType": "Patient", "id": "twice", "name": [{"family": "Second"}]},
    ]
    code, out = run(instance.home, "import", str(ndjson(tmp_path / "r.ndjson", records)), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 2, 1)
    assert versions(instance, "Patient", "twice") == 2
    assert repo.read("Patient", "twice").resource["name"] == [{"family": "Second"}]
    assert versions(instance, "Patient", "gone") == 3  # created, deleted, imported back
    assert search_total(instance, "Patient", ("family", "second")) == 1
    assert search_total(instance, "Patient", ("family", "first")) == 0


def test_a_bad_record_is_named_by_its_place_and_not_its_values(
    instance: Instance, tmp_path: Path
) -> None:
    good = [
        {"resourceType": "Patient", "id": f"g{i}", "name": [{"family": f"Good{i}"}]}
        for i in range(9)
    ]
    bad = {
        "resourceType": "Patient",
        "id": "bad",
        "name": [{"family": MARKER}],
        "birthDate": f"{MARKER}-01",
    }
    path = ndjson(tmp_path / "bad.ndjson", [*good[:7], bad, *good[7:]])
    code, out = run(instance.home, "import", str(path), "--chunk", "3")
    assert code != 0
    assert "Line 8" in out, out
    assert "Patient.birthDate" in out
    assert "HRT-0201" in out
    assert "Everything before it is imported (7 records)" in out, out
    assert MARKER not in out
    assert search_total(instance, "Patient", ("family", "good")) == 7  # lines 1-7, none after

    fixed = {**bad, "birthDate": "1970-01-01"}
    code, out = run(
        instance.home, "import", str(ndjson(path, [*good[:7], fixed, *good[7:]])), "--json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert (report["unchanged"], report["created"]) == (7, 3)

    not_json = tmp_path / "notjson.ndjson"
    not_json.write_bytes(orjson.dumps(good[0]) + b"\n{" + MARKER.encode() + b"\n")
    code, out = run(instance.home, "import", str(not_json))
    assert code != 0
    assert "Line 2: Not valid JSON" in out, out
    assert MARKER not in out
    not_object = tmp_path / "array.ndjson"
    not_object.write_bytes(b'["' + MARKER.encode() + b'"]\n')
    code, out = run(instance.home, "import", str(not_object))
    assert code != 0
    assert "Line 1: A FHIR resource must be a JSON object" in out, out
    assert MARKER not in out

    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
            "resource": {"resourceType": "Patient", "name": [{"family": f"Entry{i}"}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(5)
    ]
    entries[3]["resource"] = {"resourceType": "Patient", "active": MARKER}
    broken = tmp_path / "bundle.json"
    broken.write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    )
    code, out = run(instance.home, "import", str(broken), "--chunk", "2")
    assert code != 0
    assert "Bundle.entry[3]" in out, out
    assert "Patient.active" in out
    assert MARKER not in out
    assert search_total(instance, "Patient", ("family", "entry")) == 3

    # A urn:uuid reference that names no entry of the Bundle stops the import at its entry.
    entries[3]["resource"] = {
        "resourceType": "Patient",
        "name": [{"family": "Entry3"}],
        "link": [
            {
                "other": {"reference": "urn:uuid:00000000-0000-4000-8000-999999999999"},
                "type": "seealso",
            }
        ],
    }
    broken.write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    )
    code, out = run(instance.home, "import", str(broken), "--chunk", "2")
    assert code != 0
    assert "Bundle.entry[3]" in out, out
    assert "HRT-0910" in out, out
    assert "999999999999" not in out
    assert search_total(instance, "Patient", ("family", "entry")) == 3


def import_stream(home: Path, prefix: str, megabytes: int) -> tuple[dict[str, object], int, int]:
    """``hearth import -`` fed ``megabytes`` of NDJSON from a generator through a pipe (nothing
    on disk); returns the report, the bytes sent and the child's peak RSS in KiB."""
    text = "x" * 20_000  # large resources: many bytes, few writes, so the test stays quick
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "--home", str(home), "import", "-", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    sent = 0
    for i in itertools.count():
        if sent >= megabytes * 1_000_000:
            break
        line = orjson.dumps(
            {"resourceType": "Basic", "id": f"{prefix}{i}", "code": {"text": f"{i} {text}"}}
        )
        proc.stdin.write(line + b"\n")
        sent += len(line) + 1
    proc.stdin.close()
    with proc.stdout:
        out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, out
    return json.loads(out), sent, usage.ru_maxrss


def test_a_large_stream_imports_in_bounded_memory(sqlite_instance: Instance) -> None:
    """110 MB of NDJSON piped into ``hearth import -``: the process's peak RSS grows by a small
    fraction of that over a 2 MB import's (chunks are bounded in bytes as well as records)."""
    _, _, small_rss = import_stream(sqlite_instance.home, "small", 2)
    big, sent, big_rss = import_stream(sqlite_instance.home, "big", 110)
    assert sent > 110_000_000
    assert big["entries"] == big["created"] > 5000
    growth_mb = (big_rss - small_rss) / 1024
    print(f"peak RSS: {small_rss // 1024} MiB for 2 MB, {big_rss // 1024} MiB for 110 MB")
    assert growth_mb < 40, (small_rss, big_rss)
