"""Search and ingest benchmark (issue 3): ``python -m bench.search``.

A population of synthetic patients and observations is generated once into a cache directory
outside the repository (``$HEARTH_BENCH_CACHE``, default ``~/.cache/hearth-bench``) as NDJSON and
loaded into a fresh instance per engine through ``hearth import`` (the bulk path). A real
``hearth serve`` then answers, over loopback HTTP:

- Patient name-prefix search, identifier search, Observation by patient + code + date range,
  the same with ``_include``, and ``Patient/$everything``;
- latency: p50 and p95 of ``HEARTH_BENCH_SAMPLES`` sequential requests (one client);
- throughput: requests per second under wrk with 16 connections for ``HEARTH_BENCH_DURATION``;
- ingest: ``hearth import`` resources per second (wall and CPU), and Synthea-shaped transaction
  bundles POSTed to ``/fhir`` one after another (resources per second);
- ``hearth integrity scan`` of the loaded population before the server starts (versions per
  second), so that the server's own scanner does not spend the measurement catching up.

Scale: ``HEARTH_BENCH_PATIENTS`` (default 100,000) with ``HEARTH_BENCH_OBS_PER_PATIENT``
(default 10) observations each; ``HEARTH_BENCH_ENGINES`` (default ``sqlite,postgresql``). The
machine's load average is recorded beside every figure: on a shared machine it matters.

``HEARTH_BENCH_SEARCH_REUSE=1`` skips the imports (an import of 1,100,000 resources takes most
of an hour here) and searches a copy of the instance the backup benchmark keeps
(``HEARTH_BENCH_BACKUP_REUSE=1``: ``~/.cache/hearth-bench/backup-P-N-sqlite``), the same
population loaded by ``hearth import``; on PostgreSQL, that copy's full backup restored into a
fresh database (the restore's figures are reported instead of the import's).
``HEARTH_BENCH_SEARCH_HOME=DIR`` (with one engine in ``HEARTH_BENCH_ENGINES``) measures an
instance that already holds the population, as it is: nothing is imported or restored, and the
transaction bundles are written into it (``HEARTH_BENCH_BUNDLES``, 100 by default: 15,300
entries each run; measure a copy to keep the instance at the issue's scale).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson

from bench import population
from bench.common import (
    drop_postgres_database,
    free_port,
    hearth_serve,
    print_table,
    serve,
    temp_postgres_database,
    write_results,
)

CODES = ["8867-4", "8480-6", "8462-4", "29463-7", "8302-2", "2339-0", "2093-3", "718-7"]
MRN = "urn:oid:2.16.840.1.113883.4.642.99"


def dataset(patients: int, per_patient: int) -> Path:
    """Generate (once) the NDJSON population; returns its directory."""
    cache = Path(os.environ.get("HEARTH_BENCH_CACHE", Path.home() / ".cache" / "hearth-bench"))
    folder = cache / f"search-{patients}-{per_patient}"
    done = folder / "done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20260101)
    families = population.families(rng, max(100, patients // 50))
    with (folder / "patients.ndjson").open("wb") as out:
        for i in range(patients):
            out.write(orjson.dumps(population.patient(i, rng, families, mrn_system=MRN)) + b"\n")
    with (folder / "observations.ndjson").open("wb") as out:
        for i in range(patients * per_patient):
            resource = population.observation(i, per_patient, rng, CODES)
            out.write(orjson.dumps(resource) + b"\n")
    (folder / "families.json").write_text(json.dumps(families))
    done.write_text("ok\n")
    return folder


def _hearth(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "--home", str(home), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    ).stdout


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def _import(home: Path, path: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    report = json.loads(_hearth(home, "import", str(path), "--json"))
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "resources": report["written"],
        "wall_s": wall,
        "cpu_s": cpu,
        "per_s_wall": report["written"] / wall,
        "per_s_cpu": report["written"] / cpu if cpu else float("nan"),
    }


def _scan(home: Path, env: dict[str, str] | None) -> dict[str, float]:
    """``hearth integrity scan`` of what was loaded, before the server starts.

    The server's own scanner checks the versions written since its last run a minute after it
    starts (``[integrity] scan_interval_seconds``), up to 500,000 of them a run. On a freshly
    loaded instance that first run would check the whole population while the transaction
    bundles are posted, and measure the scanner's catch-up rather than the ingest (1,059
    entries/s against 1,698 on the same instance, docs/benchmarks.md). So the catch-up runs
    here, as its own figure, and the server's scanner starts where it ended."""
    start = time.monotonic()
    report = json.loads(_hearth(home, "integrity", "scan", "--json", env=env))
    wall = time.monotonic() - start
    if not report["ok"]:
        raise RuntimeError(f"integrity scan found damage: {report['new'] or report['open']}")
    return {"versions": report["versions"], "wall_s": wall, "per_s": report["versions"] / wall}


def _latency(client: httpx.Client, paths: list[str], samples: int) -> dict[str, float]:
    times = []
    for n in range(samples):
        start = time.perf_counter()
        response = client.get(paths[n % len(paths)])
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(
                f"{paths[n % len(paths)]}: {response.status_code} {response.text[:300]}"
            )
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
    }


def _wrk(base: str, paths: list[str], token: str, duration: float) -> float:
    quoted = ",".join(json.dumps(p) for p in paths)
    lua = f"""
local paths = {{{quoted}}}
local n = 0
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{int(duration)}s", "-s", script.name, base + paths[0]],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 120,
        ).stdout
    finally:
        os.unlink(script.name)
    import re

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} errors on {paths[0]}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def queries(rng: random.Random, folder: Path, patients: int) -> dict[str, list[str]]:
    families = json.loads((folder / "families.json").read_text())
    picks = [rng.randrange(patients) for _ in range(200)]
    codes = [CODES[rng.randrange(len(CODES))] for _ in range(200)]
    return {
        "Patient name prefix": [
            f"/fhir/Patient?name={rng.choice(families)[:4].lower()}&_count=20" for _ in range(200)
        ],
        "Patient identifier": [f"/fhir/Patient?identifier={MRN}|MRN{p:08d}" for p in picks],
        "Observation patient+code+date": [
            f"/fhir/Observation?patient=p{p}&code={population.LOINC}|{c}&date=ge2021-01-01&date=le2022-12-31"
            for p, c in zip(picks, codes, strict=True)
        ],
        "Observation + _include": [
            f"/fhir/Observation?patient=p{p}&code={population.LOINC}|{c}&_include=Observation:subject"
            for p, c in zip(picks, codes, strict=True)
        ],
        "Patient/$everything": [f"/fhir/Patient/p{p}/$everything?_count=50" for p in picks],
    }


def _transactions(base: str, token: str, count: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.synthea import patient_bundle, provider_pool

    rng = random.Random(99)
    providers = provider_pool(rng, 20)
    bundles = [
        orjson.dumps(
            patient_bundle(rng, providers, encounters=10, observations_per_encounter=8).bundle
        )
        for _ in range(count)
    ]
    entries = sum(len(orjson.loads(b)["entry"]) for b in bundles)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        start = time.monotonic()
        for body in bundles:
            client.post("/fhir", content=body).raise_for_status()
        wall = time.monotonic() - start
    return {"bundles": count, "entries": entries, "wall_s": wall, "per_s": entries / wall}


def _reused(
    engine: str, folder: Path, home: Path, database: str | None, result: dict[str, Any]
) -> str:
    """Copy the backup benchmark's cached instance of this population into ``home``; on
    PostgreSQL restore its full backup into ``database``. Returns an admin API token."""
    cache = folder.parent / f"backup-{folder.name.removeprefix('search-')}-sqlite" / "home"
    if not cache.is_dir():
        raise SystemExit(
            f"no cached instance at {cache}: build it first with HEARTH_BENCH_BACKUP_REUSE=1 "
            "python -m bench backup (same HEARTH_BENCH_*PATIENTS settings)"
        )
    shutil.copytree(cache, home)
    _hearth(home, "migrate")
    if database is not None:
        identity = home.parent / "id.key"
        _hearth(home, "keys", "backup-recipient", "--identity-out", str(identity))
        made = json.loads(_hearth(home, "backup", "create", "--full", "--json"))
        _log(f"{engine}: restoring {made['backup_id']} into PostgreSQL")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        restored = json.loads(
            _hearth(
                home,
                "backup",
                "restore",
                made["backup_id"],
                "--into",
                database,
                "--identity",
                str(identity),
                "--json",
            )
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["restore"] = {
            "versions": made["sequence"]["to"],
            "wall_s": time.monotonic() - start,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "result": restored,
        }
        _log(f"{engine}: restored: {json.dumps(result['restore'])}")
        shutil.rmtree(home / "backups")
        (home / "data" / "hearth.db").unlink()
    env = {"HEARTH_DATABASE_URL": database} if database is not None else None
    return _hearth(home, "token", "issue", "--hours", "24", env=env).strip()


@dataclass(frozen=True)
class Knobs:
    """How much to measure: sequential requests per query, seconds of wrk per query, and
    transaction bundles posted."""

    samples: int
    duration: float
    bundles: int


def run_engine(
    engine: str, folder: Path, patients: int, knobs: Knobs, *, reuse: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": engine, "reused": reuse}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        database = None
        name = None
        if engine == "postgresql":
            database, name = temp_postgres_database()
        env = {"HEARTH_DATABASE_URL": database} if reuse and database else None
        try:
            if reuse:
                token = _reused(engine, folder, home, database, result)
            else:
                args = ["init", "--json"] + (["--database", database] if database else [])
                token = json.loads(_hearth(home, *args))["admin_token"]
            result["load_before"] = os.getloadavg()[0]
            for key in () if reuse else ("patients", "observations"):
                _log(f"{engine}: importing {key}")
                result[f"import_{key}"] = _import(home, folder / f"{key}.ndjson")
                _log(f"{engine}: {key}: {json.dumps(result[f'import_{key}'])}")
            _measure(engine, home, token, env, folder, patients, knobs, result)
        finally:
            if name is not None:
                drop_postgres_database(name)
    return result


def _measure(
    engine: str,
    home: Path,
    token: str,
    env: dict[str, str] | None,
    folder: Path,
    patients: int,
    knobs: Knobs,
    result: dict[str, Any],
) -> None:
    """Scan what ``home`` holds, then serve it and measure the searches, then the transaction
    bundles, into ``result``."""
    result["integrity_scan"] = _scan(home, env)
    _log(f"{engine}: integrity scan: {json.dumps(result['integrity_scan'])}")
    port = free_port()
    with serve(hearth_serve(home, port), port, "/fhir/metadata", env=env) as server:
        headers = {"Authorization": f"Bearer {token}"}
        plans = queries(random.Random(5), folder, patients)
        result["queries"] = {}
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
            for label, paths in plans.items():
                client.get(paths[0]).raise_for_status()  # warm up
                figures = _latency(client, paths, knobs.samples)
                figures["rps"] = _wrk(server.base, paths, token, knobs.duration)
                figures["load"] = os.getloadavg()[0]
                result["queries"][label] = figures
                _log(f"{engine}: {label}: {json.dumps(figures)}")
        result["transactions"] = _transactions(server.base, token, knobs.bundles)
        result["server_rss_peak_mb"] = server.rss_peak_kb / 1024
        result["server_with_workers_rss_peak_mb"] = server.rss_peak_with_children_kb / 1024


def run_home(engine: str, home: Path, folder: Path, patients: int, knobs: Knobs) -> dict[str, Any]:
    """Measure an instance that already holds the population (``HEARTH_BENCH_SEARCH_HOME``):
    nothing is imported or restored, and the transaction bundles are written into it."""
    result: dict[str, Any] = {"engine": engine, "reused": True, "home": str(home)}
    token = _hearth(home, "token", "issue", "--hours", "24").strip()
    result["load_before"] = os.getloadavg()[0]
    _measure(engine, home, token, None, folder, patients, knobs, result)
    return result


def main() -> None:
    patients = int(os.environ.get("HEARTH_BENCH_PATIENTS", "100000"))
    per_patient = int(os.environ.get("HEARTH_BENCH_OBS_PER_PATIENT", "10"))
    engines = os.environ.get("HEARTH_BENCH_ENGINES", "sqlite,postgresql").split(",")
    knobs = Knobs(
        samples=int(os.environ.get("HEARTH_BENCH_SAMPLES", "200")),
        duration=float(os.environ.get("HEARTH_BENCH_DURATION", "10")),
        # About 1,900 pages of SQLite's write-ahead log a bundle at the scale: a hundred
        # pass its checkpoint threshold (hearth.storage.sql.engine.WAL_CHECKPOINT_PAGES) several
        # times, so the rate includes the checkpoints' share; ten would defer all of it.
        bundles=int(os.environ.get("HEARTH_BENCH_BUNDLES", "100")),
    )
    reuse = os.environ.get("HEARTH_BENCH_SEARCH_REUSE") == "1"
    folder = dataset(patients, per_patient)
    results: dict[str, Any] = {
        "patients": patients,
        "observations": patients * per_patient,
        "engines": {},
    }
    home = os.environ.get("HEARTH_BENCH_SEARCH_HOME")
    if home is not None and len(engines) != 1:
        raise SystemExit("HEARTH_BENCH_SEARCH_HOME measures one instance: name its engine alone")
    for engine in engines:
        if home is not None:
            results["engines"][engine] = run_home(engine, Path(home), folder, patients, knobs)
        else:
            results["engines"][engine] = run_engine(engine, folder, patients, knobs, reuse=reuse)
        # Written after each engine: a long run that is stopped keeps what it measured.
        write_results("search", results)
    rows = []
    for engine, r in results["engines"].items():
        for label, q in r["queries"].items():
            rows.append(
                [
                    engine,
                    label,
                    f"{q['p50_ms']:.1f}",
                    f"{q['p95_ms']:.1f}",
                    f"{q['rps']:.0f}",
                    f"{q['load']:.1f}",
                ]
            )
    print_table(
        f"Search over {patients:,} patients and {patients * per_patient:,} observations",
        ["engine", "query", "p50 ms", "p95 ms", "req/s", "load"],
        rows,
    )
    ingest = []
    for engine, r in results["engines"].items():
        for key in ("import_patients", "import_observations"):
            if key not in r:  # a reused instance: nothing was imported in this run
                continue
            i = r[key]
            ingest.append(
                [
                    engine,
                    key.replace("_", " "),
                    i["resources"],
                    f"{i['per_s_wall']:.0f}",
                    f"{i['per_s_cpu']:.0f}",
                ]
            )
        s = r["integrity_scan"]
        ingest.append(
            [
                engine,
                "integrity scan before serving (versions)",
                s["versions"],
                f"{s['per_s']:.0f}",
                "-",
            ]
        )
        t = r["transactions"]
        ingest.append(
            [engine, "transaction bundles (POST /fhir)", t["entries"], f"{t['per_s']:.0f}", "-"]
        )
    print_table("Ingest", ["engine", "path", "resources", "per s (wall)", "per CPU s"], ingest)
    print(f"\nwrote {write_results('search', results)}")


if __name__ == "__main__":
    main()
