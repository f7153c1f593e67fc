"""The index workers' process and settings (hearth.storage.index_workers), apart from any
engine; tests/contract/test_index_workers.py checks what they compute on every engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from hearth.domain import HearthError
from hearth.settings import load_settings
from hearth.storage import index_workers
from tests.support import Instance

ROOT = Path(__file__).resolve().parents[2]


def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    """A worker is its own module, not a ``multiprocessing`` child: a script that writes a
    large bundle at top level (no ``if __name__ == "__main__"``) runs once, not again in
    each worker."""
    script = tmp_path / "load.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import random, sys
            sys.path.insert(0, {str(ROOT)!r})
            from pathlib import Path
            from hearth.settings import load_settings
            from hearth.wiring import Container, init_instance
            from tests.support import admin
            from tests.synthea import patient_bundle, provider_pool
            home = Path({str(tmp_path / "home")!r})
            init_instance(home, database_url=None)
            with (home / "hearth.toml").open("a") as f:
                f.write("\\n[search]\\nindex_workers = 1\\n")
            c = Container(load_settings(home))
            b = patient_bundle(random.Random(1), provider_pool(random.Random(2), 3)).bundle
            c.bundles(admin()).process(b, base="http://h/fhir", representation=False)
            print("ran", len(b["entry"]))
            c.close()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ran ") == 1


def test_the_worker_answers_a_failed_task_with_the_exception_name_only() -> None:
    """A body the indexer cannot parse: the worker answers with the exception's name (never
    its message, which could quote a value), and stays up for the next task."""
    pool = index_workers.IndexWorkers(1)
    try:
        bad = pool.submit([("Patient", b"{not json: Secretname")])
        assert bad is not None
        with pytest.raises(index_workers.WorkerFailed) as failed:
            bad.result(timeout=60)
        assert "Secretname" not in str(failed.value)
        good = pool.submit([("Patient", b'{"resourceType":"Patient","id":"p1","gender":"male"}')])
        assert bad is not good
        assert good is not None
        body = b'{"resourceType":"Patient","id":"p1","gender":"male"}'
        assert good.result(timeout=60) == [index_workers.extract_body("Patient", body)]
    finally:
        pool.close()


def test_settings_take_a_count_of_workers(sqlite_instance: Instance) -> None:
    config = sqlite_instance.home / "hearth.toml"
    original = config.read_text()
    for bad in ("-1", '"two"', "1.5"):
        config.write_text(original + f"\n[search]\nindex_workers = {bad}\n")
        with pytest.raises(HearthError, match="index_workers"):
            load_settings(sqlite_instance.home)
    config.write_text(original + "\n[search]\nindex_workers = 0\n")
    assert load_settings(sqlite_instance.home).search.index_workers == 0
    config.write_text(original)
    assert load_settings(sqlite_instance.home).search.index_workers is None


@pytest.mark.timeout(300, method="thread")
def test_many_large_tasks_in_flight_do_not_block_the_pipes() -> None:
    """A batch hands off chunks faster than the worker answers, and the answers are larger
    than the tasks: both pipes fill. The writer must leave the reader free to drain the
    answers (it once held the reader's lock while blocked on a full pipe: a deadlock that
    ``hearth import`` met at its first chunk of 500)."""
    pool = index_workers.IndexWorkers(1)
    finder = index_workers.EntryFinder(pool)
    items = []
    for i in range(2000):
        body = orjson.dumps(
            {
                "resourceType": "Patient",
                "id": f"p{i}",
                "name": [{"family": f"Family{i}", "given": ["Given", f"Name{i}"]}],
                "address": [{"line": [f"{i} Long Street Name"], "city": "Springfield"}],
            }
        )
        item = index_workers.Unindexed(i, "Patient", f"p{i}", 0, body)
        finder.add(item)
        items.append(item)
    try:
        finder.finish()
        for item in items[::97]:
            assert item.found == index_workers.extract_body("Patient", item.body)
        assert all(item.found is not None for item in items)
    finally:
        pool.close()


def test_the_entries_of_a_stored_body_are_those_of_the_resource_written() -> None:
    """A worker finds the entries of the sealed bytes, parsed as a stored version is opened;
    the in-process path finds them from the resource as written. Both must be equal, numbers
    included (a decimal literal a float would change turns every number into ``FhirDecimal``
    when parsed)."""
    import random

    from hearth.fhir import jsonbody
    from tests.synthea import patient_bundle, provider_pool

    bundle = patient_bundle(random.Random(3), provider_pool(random.Random(4), 3)).bundle
    resources = [dict(e["resource"], id=f"r{i}") for i, e in enumerate(bundle["entry"])]
    resources.append(
        {
            "resourceType": "Observation",
            "id": "decimals",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "valueQuantity": {"value": 1e16, "unit": "mg/dL"},
            "component": [
                {"code": {"text": "a"}, "valueQuantity": {"value": 0.1 + 0.2}},
                {"code": {"text": "b"}, "valueQuantity": {"value": 100.0}},
                {"code": {"text": "c"}, "valueQuantity": {"value": -0.0}},
                {"code": {"text": "d"}, "valueInteger": 2**60},
            ],
        }
    )
    for resource in resources:
        res_type = resource["resourceType"]
        found = index_workers.extract_body(res_type, jsonbody.dumps(resource))
        assert found == index_workers.extract(res_type, resource), res_type
        parsed = jsonbody.loads(jsonbody.dumps(resource))  # as a request body is parsed
        assert found == index_workers.extract(res_type, parsed), res_type


def test_workers_that_never_answer_are_not_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that exits before answering anything (here an interpreter that is not Python:
    ``false``) fails its task, and the batch finds the entries itself; after three such starts
    the process stops starting workers instead of paying for one at every large batch."""
    monkeypatch.setattr(index_workers.sys, "executable", "/bin/false")
    pool = index_workers.IndexWorkers(1)
    body = b'{"resourceType":"Patient","id":"p1","gender":"male"}'
    try:
        for _ in range(index_workers.MAX_FAILED_STARTS):
            finder = index_workers.EntryFinder(pool)
            items = [index_workers.Unindexed(i, "Patient", "p1", 0, body) for i in range(16)]
            for item in items:
                finder.add(item)
            finder.finish()
            assert all(i.found == index_workers.extract_body("Patient", body) for i in items)
        assert pool.submit([("Patient", body)]) is None
        assert pool.answered == 0
    finally:
        pool.close()
