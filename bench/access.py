"""Access-control benchmark (issue 5 item 11): ``python -m bench access``.

What care-team scoping costs on search: the same searches by a physician linked to
``HEARTH_BENCH_PANEL`` patients (default 2,000) through CareTeam participation, and by the
unscoped administrator (``bootstrap-admin``), against one instance holding
``HEARTH_BENCH_ACCESS_PATIENTS`` patients (default 100,000), each with
``HEARTH_BENCH_ACCESS_OBS`` observations (default 3) and one active CareTeam. The care teams are
spread over ``patients / panel`` practitioners, so every practitioner has a full panel and the
scoping join runs over a realistic ``search_reference`` table, not a single practitioner's rows.

The population is generated as NDJSON and loaded through ``hearth import`` (the bulk path, every
resource validated, sealed, indexed and audited), once per engine; the loaded instance is kept in
the cache directory (``$HEARTH_BENCH_CACHE``, default ``~/.cache/hearth-bench``; PostgreSQL in a
database named after it) and reused by later runs, since loading 400,000 resources takes a while
on a shared machine (``HEARTH_BENCH_FRESH=1`` reloads). Tokens are issued afresh on each run.

A real ``hearth serve`` then answers over loopback HTTP, the two principals interleaved in one
run so that the machine's load falls on both alike:

- latency: ``HEARTH_BENCH_SAMPLES`` sequential requests per principal and query, alternating
  administrator and physician request by request; p50 and p95;
- throughput: wrk (4 connections: a wide search takes a second) in ``HEARTH_BENCH_ROUNDS``
  alternating rounds of ``HEARTH_BENCH_DURATION`` seconds per principal; the median of each
  side's rounds;
- the ratio physician / administrator of req/s (target >= 0.7) and of p50 and p95 latency.

``HEARTH_BENCH_ACCESS_QUERIES`` (comma-separated words, default all) keeps the queries whose label
contains one of them, e.g. ``name,one patient`` for the selective ones only.

The physician's searches are answered with their own scope (the same query returns at most
their 2,000 patients' records); the snooping monitor is on with its default thresholds, as in
production, so its per-disclosure cost is part of the figure.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson

from bench import population
from bench.common import (
    free_port,
    hearth_serve,
    lua_requests,
    print_table,
    serve,
    write_results,
    wrk,
)

CODES = ["8867-4", "8480-6", "8462-4", "29463-7"]
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PHYSICIAN = "drbench"


def _cache() -> Path:
    return Path(os.environ.get("HEARTH_BENCH_CACHE", Path.home() / ".cache" / "hearth-bench"))


def dataset(patients: int, per_patient: int, panel: int) -> Path:
    """Generate (once) the NDJSON population; returns its directory."""
    folder = _cache() / f"access-{patients}-{per_patient}-{panel}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261129)
    families = population.families(rng, max(100, patients // 50))
    practitioners = max(1, patients // panel)
    with (folder / "1-practitioners.ndjson").open("wb") as out:
        for n in range(practitioners):
            out.write(
                orjson.dumps(
                    {
                        "resourceType": "Practitioner",
                        "id": f"pr{n}",
                        "name": [{"family": f"Doctor{n}"}],
                    }
                )
                + b"\n"
            )
    with (folder / "2-patients.ndjson").open("wb") as out:
        for i in range(patients):
            out.write(orjson.dumps(population.patient(i, rng, families)) + b"\n")
    with (folder / "3-careteams.ndjson").open("wb") as out:
        for i in range(patients):
            out.write(
                orjson.dumps(
                    {
                        "resourceType": "CareTeam",
                        "id": f"ct{i}",
                        "status": "active",
                        "subject": {"reference": f"Patient/p{i}"},
                        "participant": [
                            {"member": {"reference": f"Practitioner/pr{i % practitioners}"}}
                        ],
                    }
                )
                + b"\n"
            )
    with (folder / "4-observations.ndjson").open("wb") as out:
        for i in range(patients * per_patient):
            resource = population.observation(i, per_patient, rng, CODES)
            out.write(orjson.dumps(resource) + b"\n")
    (folder / "families.json").write_text(json.dumps(families))
    (folder / "done").write_text("ok\n")
    return folder


def _hearth(home: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "--home", str(home), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _postgres(statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def instance(engine: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    """A loaded instance for ``engine`` (built once and kept in the cache); returns its home and
    the load report. An interrupted load resumes with the files not yet imported."""
    place = _cache() / f"{folder.name}-{engine}"
    home = place / "home"
    marker = place / "loaded.json"
    progress = place / "progress.json"
    database = f"hearth_bench_{folder.name.replace('-', '_')}"
    fresh = os.environ.get("HEARTH_BENCH_FRESH") == "1"
    if marker.exists() and not fresh:
        return home, {**json.loads(marker.read_text()), "reused": True}
    report: dict[str, Any] = {"engine": engine, "files": {}}
    if progress.exists() and not fresh:
        report = json.loads(progress.read_text())
        _hearth(home, "migrate")
    else:
        if place.exists():
            subprocess.run(["rm", "-rf", str(place)], check=True)
        place.mkdir(parents=True)
        args = ["init", "--json"]
        if engine == "postgresql":
            _postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            _postgres(f'CREATE DATABASE "{database}"')
            args += ["--database", f"postgresql://postgres@127.0.0.1:5432/{database}"]
        elif engine != "sqlite":
            raise SystemExit(f"unsupported engine {engine!r} (sqlite, postgresql)")
        _hearth(home, *args)
        progress.write_text(json.dumps(report))
    for path in sorted(folder.glob("*.ndjson")):
        if path.name in report["files"]:
            continue
        began = time.monotonic()
        done = json.loads(_hearth(home, "import", str(path), "--json"))
        wall = time.monotonic() - began
        report["files"][path.name] = {"resources": done["written"], "wall_s": wall}
        progress.write_text(json.dumps(report))
        print(f"  {engine}: {path.name} {done['written']:,} in {wall:.0f} s", flush=True)
    report["load_wall_s"] = sum(f["wall_s"] for f in report["files"].values())
    report["resources"] = sum(f["resources"] for f in report["files"].values())
    report["load_per_s"] = report["resources"] / report["load_wall_s"]
    _hearth(home, "user", "add", PHYSICIAN, "--role", "physician")
    _hearth(home, "role", "link", PHYSICIAN, "--practitioner", "pr0")
    marker.write_text(json.dumps(report, indent=2) + "\n")
    return home, {**report, "reused": False}


def clone_to_postgres(source: Path, folder: Path) -> tuple[Path, dict[str, Any]]:
    """A PostgreSQL instance holding exactly what the loaded SQLite instance ``source`` holds:
    its home (keys, anchor, configuration) copied, the schema made by ``hearth migrate``, and
    every table copied row for row with COPY. The sealed bodies, MACs and audit chain are bound
    to types, ids and versions, not to the engine, so the copy is the same instance. Used because
    the bulk import runs at tens of resources per second on PostgreSQL when the machine's two
    cores are shared (each statement waits for a time slice twice); the import rate is measured
    by ``bench.search``, and this benchmark measures searching."""
    import psycopg
    from sqlalchemy import create_engine, func, select

    from hearth.storage.sql import tables

    place = _cache() / f"{folder.name}-postgresql"
    home = place / "home"
    marker = place / "loaded.json"
    database = f"hearth_bench_{folder.name.replace('-', '_')}"
    if marker.exists() and os.environ.get("HEARTH_BENCH_FRESH") != "1":
        return home, {**json.loads(marker.read_text()), "reused": True}
    if place.exists():
        subprocess.run(["rm", "-rf", str(place)], check=True)
    place.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(source), str(home)], check=True)
    for leftover in (home / "data").glob("hearth.db*"):
        leftover.unlink()
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    config = home / "hearth.toml"
    lines = config.read_text().splitlines()
    section = ""
    for n, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip()
        elif section == "[database]" and line.startswith("url ="):
            lines[n] = f'url = "{url}"'
    config.write_text("\n".join(lines) + "\n")
    _postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _postgres(f'CREATE DATABASE "{database}"')
    _hearth(home, "migrate")
    began = time.monotonic()
    reader = create_engine(f"sqlite:///{source / 'data' / 'hearth.db'}")
    copied: dict[str, int] = {}
    with reader.connect() as src, psycopg.connect(url) as dst:
        names = [t.name for t in tables.metadata.sorted_tables]
        dst.execute(f"TRUNCATE {', '.join(names)}")
        for table in tables.metadata.sorted_tables:
            columns = [c.name for c in table.columns]
            rows = 0
            statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
            with dst.cursor().copy(statement) as copy:
                for row in src.execute(select(table)):
                    copy.write_row(tuple(row))
                    rows += 1
            copied[table.name] = rows
            for column in table.columns:
                if column.autoincrement is True and rows:
                    top = src.execute(select(func.max(column))).scalar_one()
                    dst.execute(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), %s)",
                        (table.name, column.name, top),
                    )
        dst.execute("ANALYZE")
    reader.dispose()
    loaded = json.loads((source.parent / "loaded.json").read_text())
    report = {
        "engine": "postgresql",
        "copied_from": "sqlite",
        "copy_wall_s": time.monotonic() - began,
        "rows": copied,
        "resources": loaded["resources"],
    }
    marker.write_text(json.dumps(report, indent=2) + "\n")
    return home, {**report, "reused": False}


def queries(
    rng: random.Random, folder: Path, patients: int, panel_size: int
) -> dict[str, list[str]]:
    """The searches, each a list of concrete paths cycled through."""
    families = json.loads((folder / "families.json").read_text())
    codes = [CODES[rng.randrange(len(CODES))] for _ in range(200)]
    # Patients on the physician's panel (pr0's care teams), so both principals find the chart.
    practitioners = max(1, patients // panel_size)
    panel = [practitioners * rng.randrange(panel_size) for _ in range(200)]
    return {
        "Patient name prefix": [
            f"/fhir/Patient?name={rng.choice(families)[:4].lower()}&_count=20" for _ in range(200)
        ],
        "Observation by code": [
            f"/fhir/Observation?code={population.LOINC}|{c}&_count=20" for c in codes
        ],
        "Observation of one patient": [
            f"/fhir/Observation?patient=p{p}&code={population.LOINC}|{c}"
            for p, c in zip(panel, codes, strict=True)
        ],
    }


def _latency(
    clients: dict[str, httpx.Client], paths: list[str], samples: int
) -> dict[str, dict[str, float]]:
    """Sequential requests, the principals alternating request by request."""
    times: dict[str, list[float]] = {who: [] for who in clients}
    totals: dict[str, list[int]] = {who: [] for who in clients}
    for n in range(samples):
        order = list(clients) if n % 2 == 0 else list(reversed(clients))
        for who in order:
            path = paths[n % len(paths)]
            start = time.perf_counter()
            response = clients[who].get(path)
            times[who].append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{who} {path}: {response.status_code} {response.text[:300]}")
            totals[who].append(int(response.json().get("total", -1)))
    out = {}
    for who, values in times.items():
        values.sort()
        out[who] = {
            "p50_ms": statistics.median(values),
            "p95_ms": values[max(0, int(len(values) * 0.95) - 1)],
            "median_total": statistics.median(totals[who]),
        }
    return out


def _throughput(
    base: str, paths: list[str], tokens: dict[str, str], rounds: int, duration: float
) -> dict[str, dict[str, Any]]:
    """wrk rounds alternating between the principals; the median of each side's rounds."""
    per: dict[str, list[float]] = {who: [] for who in tokens}
    for n in range(rounds):
        order = list(tokens) if n % 2 == 0 else list(reversed(tokens))
        for who in order:
            result = wrk(
                base + paths[0],
                lua_requests("GET", paths, None, tokens[who]),
                duration=duration,
                connections=4,
                timeout=60,
            )
            if result.errors:
                raise RuntimeError(f"wrk saw {result.errors} errors for {who} on {paths[0]}")
            per[who].append(result.requests_per_second)
    return {who: {"rps": statistics.median(v), "rounds": v} for who, v in per.items()}


def run_engine(
    engine: str,
    folder: Path,
    patients: int,
    panel: int,
    *,
    samples: int,
    rounds: int,
    duration: float,
) -> dict[str, Any]:
    if engine == "postgresql" and os.environ.get("HEARTH_BENCH_PG_IMPORT") != "1":
        source, _ = instance("sqlite", folder)
        home, load = clone_to_postgres(source, folder)
    else:
        home, load = instance(engine, folder)
    result: dict[str, Any] = {"engine": engine, "load": load}
    tokens = {
        "administrator": _hearth(home, "token", "issue", "--user", "admin", "--hours", "2").strip(),
        "physician": _hearth(home, "token", "issue", "--user", PHYSICIAN, "--hours", "2").strip(),
    }
    port = free_port()
    with serve(hearth_serve(home, port), port, "/fhir/metadata") as server:
        clients = {
            who: httpx.Client(
                base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=120
            )
            for who, token in tokens.items()
        }
        try:
            mine = clients["physician"].get("/fhir/Patient?_count=1")
            mine.raise_for_status()
            result["physician_patients"] = mine.json().get("total")
            result["queries"] = {}
            wanted = [w for w in os.environ.get("HEARTH_BENCH_ACCESS_QUERIES", "").split(",") if w]
            for label, paths in queries(random.Random(5), folder, patients, panel).items():
                if wanted and not any(w.lower() in label.lower() for w in wanted):
                    continue
                for client in clients.values():
                    client.get(paths[0]).raise_for_status()  # warm up
                figures: dict[str, Any] = {"latency": _latency(clients, paths, samples)}
                figures["throughput"] = _throughput(server.base, paths, tokens, rounds, duration)
                figures["load"] = os.getloadavg()[0]
                lat = figures["latency"]
                thr = figures["throughput"]
                figures["ratio_rps"] = thr["physician"]["rps"] / max(
                    thr["administrator"]["rps"], 1e-9
                )
                figures["ratio_p50"] = lat["administrator"]["p50_ms"] / lat["physician"]["p50_ms"]
                figures["ratio_p95"] = lat["administrator"]["p95_ms"] / lat["physician"]["p95_ms"]
                result["queries"][label] = figures
                print(
                    f"  {engine} {label}: ratio req/s {figures['ratio_rps']:.2f}, "
                    f"p95 {figures['ratio_p95']:.2f}",
                    flush=True,
                )
        finally:
            for client in clients.values():
                client.close()
        result["server_rss_peak_mb"] = server.rss_peak_kb / 1024
    return result


def main() -> None:
    patients = int(os.environ.get("HEARTH_BENCH_ACCESS_PATIENTS", "100000"))
    per_patient = int(os.environ.get("HEARTH_BENCH_ACCESS_OBS", "3"))
    panel = int(os.environ.get("HEARTH_BENCH_PANEL", "2000"))
    engines = os.environ.get("HEARTH_BENCH_ENGINES", "sqlite,postgresql").split(",")
    samples = int(os.environ.get("HEARTH_BENCH_SAMPLES", "100"))
    rounds = int(os.environ.get("HEARTH_BENCH_ROUNDS", "3"))
    duration = float(os.environ.get("HEARTH_BENCH_DURATION", "8"))
    folder = dataset(patients, per_patient, panel)
    results: dict[str, Any] = {
        "patients": patients,
        "observations": patients * per_patient,
        "care_teams": patients,
        "panel": panel,
        "engines": {},
    }
    for engine in engines:
        results["engines"][engine] = run_engine(
            engine, folder, patients, panel, samples=samples, rounds=rounds, duration=duration
        )
        write_results("access", results)  # what is measured so far survives a later failure

    rows = []
    for engine, r in results["engines"].items():
        for label, q in r["queries"].items():
            lat, thr = q["latency"], q["throughput"]
            rows.append(
                [
                    engine,
                    label,
                    f"{lat['administrator']['p50_ms']:.1f} / {lat['physician']['p50_ms']:.1f}",
                    f"{lat['administrator']['p95_ms']:.1f} / {lat['physician']['p95_ms']:.1f}",
                    f"{thr['administrator']['rps']:.0f} / {thr['physician']['rps']:.0f}",
                    f"{q['ratio_rps']:.2f}",
                    f"{q['ratio_p95']:.2f}",
                    f"{q['load']:.1f}",
                ]
            )
    print_table(
        f"Care-team scoping: a physician with {panel:,} patients against the unscoped "
        f"administrator, {patients:,} patients and {patients * per_patient:,} observations",
        [
            "engine",
            "query",
            "p50 ms admin/phys",
            "p95 ms admin/phys",
            "req/s admin/phys",
            "req/s ratio",
            "p95 ratio",
            "load",
        ],
        rows,
    )
    print(f"\nwrote {write_results('access', results)}")


if __name__ == "__main__":
    main()
