"""Index entries found by worker processes (hearth.storage.index_workers): the rows a large
batch writes with workers are the rows the scanner expects from each current version, a worker
that dies costs nothing but time, and a worker never sees the instance's secrets."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.services.scanner import IntegrityScanner
from hearth.services.search import SearchQuery
from hearth.settings import IntegritySettings, load_settings
from hearth.storage import index_workers
from hearth.wiring import Container
from tests.support import Instance, admin
from tests.synthea import patient_bundle, provider_pool

pytestmark = pytest.mark.engines

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://h/fhir"


def with_workers(instance: Instance, processes: int) -> Container:
    """A second container on the instance, configured with ``processes`` index workers."""
    with (instance.home / "hearth.toml").open("a") as config:
        config.write(f"\n[search]\nindex_workers = {processes}\n")
    return Container(load_settings(instance.home))


def synthea(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    providers = provider_pool(random.Random(99), 5)
    return patient_bundle(rng, providers, encounters=4, observations_per_encounter=6).bundle


def full_scan(container: Container) -> Any:
    class Alarms:
        def raise_alarm(self, alarm: object) -> None:
            raise AssertionError(alarm)

    scanner = IntegrityScanner(
        lambda: container.system_repository("integrity-scan"),
        clock=container.clock,
        settings=IntegritySettings(),
        alarms=Alarms(),
    )
    return scanner.scan(full=True)


@pytest.fixture
def workers(instance: Instance) -> Iterator[Container]:
    container = with_workers(instance, 1)
    try:
        yield container
    finally:
        container.close()


def pool() -> index_workers.IndexWorkers:
    workers = index_workers.shared(1)
    assert workers is not None
    return workers


def worker_pids() -> list[int]:
    return pool().pids


def test_a_large_batch_writes_the_rows_each_version_calls_for(workers: Container) -> None:
    """Two transaction bundles (about 60 entries each, several chunks) and a conditional
    update through the workers: the full scan recomputes every current version's rows in
    process and finds them all as written; searches find what the bundles wrote."""
    bundles = workers.bundles(admin())
    answered = pool().answered
    first = bundles.process(synthea(1), base=BASE, representation=False)
    assert len(first["entry"]) > 3 * index_workers.CHUNK
    bundles.process(synthea(2), base=BASE, representation=False)
    assert pool().answered - answered >= 4, "a worker answered the chunks"
    report = full_scan(workers)
    assert report.ok, [str(f) for f in report.findings]
    assert report.versions_read > 100
    search = workers.search(admin())

    def ids(res_type: str, *params: tuple[str, str]) -> set[str]:
        bundle = search.search(
            SearchQuery(res_type, [*params, ("_count", "500")]), base=BASE, url=BASE
        )
        return {e["resource"]["id"] for e in bundle.get("entry", ())}

    patients = ids("Patient")
    assert len(patients) == 2
    for res_id in patients:
        (patient,) = [workers.records(admin()).read("Patient", res_id).resource]
        assert patient is not None
        family = patient["name"][0]["family"]
        assert res_id in ids("Patient", ("family", family[:3]))
        observations = ids("Observation", ("subject", f"Patient/{res_id}"))
        assert observations, "found by reference"
        first = workers.records(admin()).read("Observation", min(observations)).resource
        assert first is not None
        coding = first["code"]["coding"][0]
        code = f"{coding['system']}|{coding['code']}"
        assert min(observations) in ids("Observation", ("patient", res_id), ("code", code))


def test_a_worker_that_dies_costs_only_time(workers: Container) -> None:
    """A worker killed between two bundles: the next bundle's first chunk goes to a worker
    that is gone, every entry is still indexed (found in process), and a new worker takes
    the chunks after it."""
    bundles = workers.bundles(admin())
    bundles.process(synthea(3), base=BASE, representation=False)
    (pid,) = worker_pids()
    os.kill(pid, signal.SIGKILL)
    bundles.process(synthea(4), base=BASE, representation=False)
    report = full_scan(workers)
    assert report.ok, [str(f) for f in report.findings]
    assert pid not in worker_pids()
    answered = pool().answered
    bundles.process(synthea(6), base=BASE, representation=False)
    assert pool().answered > answered, "a new worker answers"
    assert full_scan(workers).ok


def test_a_worker_is_started_without_the_instance_secrets(
    workers: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment holds the path, locale, time zone and temporary directory
    only: not the key passphrase, nor a secret under a name an operator chose."""
    pool().close()  # the next worker starts with the environment below
    monkeypatch.setenv("HEARTH_KEY_PASSPHRASE", "planted-passphrase")
    monkeypatch.setenv("SMTP_RELAY_PASSWORD", "planted-password")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-key")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    workers.bundles(admin()).process(synthea(5), base=BASE, representation=False)
    (pid,) = worker_pids()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"planted" not in environ
    names = {v.split(b"=", 1)[0] for v in environ.split(b"\0") if v}
    assert names <= {b"PATH", b"LC_ALL", b"TZ", b"TMPDIR", b"LANG", b"LANGUAGE", b"PYTHONPATH"}
    assert b"LC_ALL" in names
    pool().close()


def test_without_workers_a_large_batch_is_indexed_in_process(instance: Instance) -> None:
    """``index_workers = 0``: nothing is handed off, and the rows are as the scan expects."""
    container = with_workers(instance, 0)
    try:
        assert container.index_workers is None
        container.bundles(admin()).process(synthea(7), base=BASE, representation=False)
        assert full_scan(container).ok
    finally:
        container.close()


def test_a_version_replaced_in_its_own_batch_leaves_no_rows(workers: Container) -> None:
    """With workers, a batch's index rows go in a task at a time as the workers answer. A
    resource written twice in one batch, among versions handed to a worker before and after
    it, is indexed as its last version only: the full scan, which recomputes every current
    version's rows, finds no stray row, and a search by the replaced name finds nothing."""
    repo = workers.repository(admin())
    with repo.batch() as batch:
        for n in range(2 * index_workers.CHUNK + 3):
            batch.create({"resourceType": "Patient", "name": [{"family": f"Filler{n}"}]})
        batch.update(
            "Patient",
            "twice",
            {"resourceType": "Patient", "id": "twice", "name": [{"family": "Replacedname"}]},
        )
        for n in range(index_workers.CHUNK):
            batch.create({"resourceType": "Patient", "name": [{"family": f"More{n}"}]})
        batch.update(
            "Patient",
            "twice",
            {"resourceType": "Patient", "id": "twice", "name": [{"family": "Finalname"}]},
        )
    report = full_scan(workers)
    assert report.ok, [str(f) for f in report.findings]
    search = workers.search(admin())

    def ids(family: str) -> set[str]:
        bundle = search.search(
            SearchQuery("Patient", [("family:exact", family)]), base=BASE, url=BASE
        )
        return {e["resource"]["id"] for e in bundle.get("entry", ())}

    assert ids("Finalname") == {"twice"}
    assert ids("Replacedname") == set()
    assert len(ids("Filler1")) == 1
    assert len(ids("More0")) == 1
