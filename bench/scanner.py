"""The integrity scanner's rate (issue 6 items 7 and 10): ``python -m bench scanner``.

A fresh instance is loaded through the real write path (``ImportService``: validated, sealed,
MACed, indexed, audited) with Patients and Observations, then, side by side, in rounds:

- **MAC pass**: ``hearth integrity scan`` over every version (each body opened under its key
  and AAD, key id column, MAC, gap-free sequence, and the current pointer of every resource the
  batch touches), batched reads through the driver's cursor;
- **verify alone**: ``KeyRing.check_versions`` over rows already in memory (the floor);
- **full scan**: ``hearth integrity scan --full``: the MAC pass plus every search index row
  recomputed from the opened body and compared, the whole audit chain and the whole-table
  checks;
- **baseline**: the version part of ``hearth integrity verify`` (SQLAlchemy rows, a dataclass
  per row, one ``open_resource`` and ``verify_mac`` call each, then every pointer), which the
  scanner's loop replaces; like the MAC pass, without the audit chain.

Figures are versions per second of wall time and per second of this process's CPU time (on
SQLite the database engine runs inside the process, so CPU time is the whole cost on one core).
Writes ``bench/results/scanner.json``.

    python -m bench scanner                      # 100,000 versions on SQLite
    HEARTH_BENCH_VERSIONS=20000 HEARTH_BENCH_ENGINE=postgresql python -m bench scanner
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import write_results
from hearth.settings import load_settings
from hearth.storage.sql import scan as scan_sql
from hearth.wiring import Container, init_instance

ROUNDS = int(os.environ.get("HEARTH_BENCH_ROUNDS", "5"))
VERSIONS = int(os.environ.get("HEARTH_BENCH_VERSIONS", "100000"))
ENGINE = os.environ.get("HEARTH_BENCH_ENGINE", "sqlite")
OBSERVATIONS_PER_PATIENT = 9


def ndjson(versions: int) -> bytes:
    """Patients with a few Observations each, about ``versions`` resources in all."""
    out = io.BytesIO()
    patients = max(1, versions // (OBSERVATIONS_PER_PATIENT + 1))
    n = 0
    for p in range(patients):
        pid = str(uuid.UUID(int=p + 1))
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": f"Family{p % 997}", "given": [f"Given{p % 101}"]}],
            "gender": "female" if p % 2 else "male",
            "birthDate": f"19{50 + p % 50}-0{1 + p % 9}-1{p % 9}",
            "identifier": [{"system": "urn:mrn", "value": f"MRN{p:08d}"}],
        }
        out.write(orjson.dumps(patient) + b"\n")
        n += 1
        for o in range(OBSERVATIONS_PER_PATIENT):
            if n >= versions:
                break
            observation = {
                "resourceType": "Observation",
                "id": str(uuid.UUID(int=(p + 1) << 32 | (o + 1))),
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": f"2024-0{1 + o % 9}-1{o}T08:00:00Z",
                "valueQuantity": {
                    "value": 60 + (p + o) % 40,
                    "unit": "/min",
                    "system": "http://unitsofmeasure.org",
                    "code": "/min",
                },
            }
            out.write(orjson.dumps(observation) + b"\n")
            n += 1
    return out.getvalue()


def database_url(tmp: Path) -> str | None:
    if ENGINE == "sqlite":
        return None
    from sqlalchemy import create_engine, text

    name = f"hearth_bench_{uuid.uuid4().hex[:8]}"
    if ENGINE == "postgresql":
        admin = create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin = create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    return f"mariadb://root@127.0.0.1:3306/{name}"


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    n = fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0, n


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = database_url(tmp)
        init_instance(tmp / "home", database_url=url)
        container = Container(load_settings(tmp / "home"))
        try:
            results = run(container)
        finally:
            container.close()
    write_results("scanner", results)


def run(container: Container) -> dict[str, Any]:
    load_started = time.perf_counter()
    importer = container.importer(container.system_principal("bench"), chunk=1000)
    importer.import_ndjson(io.BytesIO(ndjson(VERSIONS)))
    load_seconds = time.perf_counter() - load_started
    system = container.system_repository("bench")
    scan = system.scanning()
    high = scan.high_seq()
    scanner = container.integrity_scanner(operator="bench")

    def mac_pass() -> int:
        scan.set_state({"inc.seq": 0, "audit.seq": 10**12})
        return scanner.scan(full=False).versions_read

    def full_pass() -> int:
        return scanner.scan(full=True).versions_read

    with container.store.snapshot() as conn:
        rows = scan_sql.version_tuples(conn, after_seq=0, upto_seq=high, limit=high)

    def verify_alone() -> int:
        problems, _ = container.keyring.check_versions(rows)
        assert not problems
        return len(rows)

    def baseline() -> int:
        # The version part of ``hearth integrity verify`` (its audit chain check is left out,
        # as the MAC pass leaves it out): every version, then every pointer.
        system = container.system_repository("bench")
        assert not list(system.scan_versions())
        assert not list(system.check_current_pointers())
        return system.version_count()

    measures: dict[str, Callable[[], int]] = {
        "mac pass (scan)": mac_pass,
        "verify alone (in memory)": verify_alone,
        "full scan (index, audit)": full_pass,
        "baseline (integrity verify)": baseline,
    }
    samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in measures}
    for round_number in range(ROUNDS):
        for name, fn in measures.items():
            # The full scan is dominated by the indexer and takes minutes: one round of it.
            if name.startswith("full") and round_number > 0:
                continue
            samples[name].append(timed(fn))
    table: dict[str, dict[str, float]] = {}
    for name, got in samples.items():
        wall = statistics.median(s[0] for s in got)
        cpu = statistics.median(s[1] for s in got)
        n = got[0][2]
        table[name] = {
            "versions": n,
            "median_wall_s": round(wall, 3),
            "median_cpu_s": round(cpu, 3),
            "versions_per_s": round(n / wall),
            "versions_per_cpu_s": round(n / cpu) if cpu > 0 else 0,
        }
    base = table["baseline (integrity verify)"]["versions_per_s"]
    print(f"engine {ENGINE}, {high} versions loaded in {load_seconds:.0f} s, {ROUNDS} rounds")
    widths = (32, 8, 8, 11, 11, 7)
    header = ("measure", "wall s", "cpu s", "versions/s", "per cpu s", "x base")
    print(
        " ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for name, row in table.items():
        print(
            f"{name:32} {row['median_wall_s']:8.3f} {row['median_cpu_s']:8.3f} "
            f"{row['versions_per_s']:11,.0f} {row['versions_per_cpu_s']:11,.0f} "
            f"{row['versions_per_s'] / base:7.2f}"
        )
    return {
        "engine": ENGINE,
        "versions": high,
        "rounds": ROUNDS,
        "load_seconds": round(load_seconds, 1),
        "measures": table,
        "load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
