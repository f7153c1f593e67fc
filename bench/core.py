"""Core benchmark (issue 2): read-by-id, create (the same Patient, and varied ones), update and
history read, Hearth against the hand-rolled baseline on the same stack, on SQLite and
PostgreSQL, plus the "hello" ceiling.

Each operation runs alternately on Hearth and on the baseline, ``REPEATS`` times, and the table
shows medians and the ratio of medians. Environment: ``HEARTH_BENCH_DURATION`` (seconds per run,
default 8), ``HEARTH_BENCH_REPEATS`` (default 3), ``HEARTH_BENCH_ENGINES`` (default
``sqlite,postgresql``), ``HEARTH_BENCH_SEED`` (resources created before measuring, default 1000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.common import (
    drop_postgres_database,
    free_port,
    hearth_serve,
    lua_requests,
    median,
    print_table,
    serve,
    temp_postgres_database,
    write_results,
    wrk,
)

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": "MRN0001234"}],
    "active": True,
    "name": [{"use": "official", "family": "Benchmark", "given": ["Bea", "Marie"]}],
    "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
    "gender": "female",
    "birthDate": "1970-04-12",
    "address": [
        {
            "line": ["12 Example Street"],
            "city": "Springfield",
            "state": "IL",
            "postalCode": "62701",
            "country": "US",
        }
    ],
}
#: ``create`` posts the same Patient every time, so every create's blind-index keys are the
#: last one's and its index rows land beside theirs; ``create-varied`` posts a Patient whose
#: names, street, identifier and birth date are drawn at random per request, as real patients'
#: differ, so about half of its keys (those of the drawn values) land at new places in the
#: index (docs/benchmarks.md).
OPERATIONS = ("read", "create", "create-varied", "update", "history")

#: Placeholders in the varied Patient, filled per request by ``varied_lua``: each is drawn as
#: (kind, low, high): ``letters`` a capital and then small letters, ``low`` to ``high`` in all;
#: ``digits`` exactly ``low`` digits; ``number`` an integer from ``low`` to ``high``.
VARIED_DRAWS: dict[str, tuple[str, int, int]] = {
    "family": ("letters", 5, 10),
    "given": ("letters", 3, 8),
    "street": ("letters", 5, 12),
    "number": ("number", 1, 9999),
    "digits": ("digits", 7, 7),
    "year": ("number", 20, 99),
    "month": ("number", 1, 9),
    "day": ("number", 0, 9),
}
VARIED_PATIENT = {
    **PATIENT,
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": "MRN@digits@"}],
    "name": [{"use": "official", "family": "@family@", "given": ["@given@", "@given@"]}],
    "birthDate": "19@year@-0@month@-1@day@",
    "address": [{**PATIENT["address"][0], "line": ["@number@ @street@ Street"]}],  # type: ignore[index]
}


def seed(base: str, token: str, count: int) -> list[str]:
    ids = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(count):
            response = client.post("/fhir/Patient", content=json.dumps(PATIENT))
            response.raise_for_status()
            ids.append(response.headers["location"].split("/Patient/")[1].split("/")[0])
        for res_id in ids[:100]:
            for n in range(4):
                body = {**PATIENT, "id": res_id, "birthDate": f"197{n}-01-01"}
                client.put(f"/fhir/Patient/{res_id}", content=json.dumps(body)).raise_for_status()
    return ids


def lua_draw(kind: str, low: int, high: int) -> str:
    """The Lua expression of one ``VARIED_DRAWS`` draw (``letters`` and ``digits`` are functions
    of the script)."""
    if kind == "letters":
        return f"letters(math.random({low}, {high}))"
    if kind == "digits":
        return f"digits({low})"
    return f"tostring(math.random({low}, {high}))"


def varied_lua(token: str) -> str:
    """A wrk script posting ``VARIED_PATIENT`` with every placeholder drawn at random as
    ``VARIED_DRAWS`` says, a new draw for each placeholder and request. Seeded from the clock,
    so that each run posts Patients of its own."""
    body = json.dumps(json.dumps(VARIED_PATIENT))
    fill = "\n".join(
        f"  {name} = function() return {lua_draw(*draw)} end,"
        for name, draw in VARIED_DRAWS.items()
    )
    return f"""
math.randomseed(os.time())
local body = {body}
local function letters(n)
  local t = {{string.char(math.random(65, 90))}}
  for i = 2, n do t[i] = string.char(math.random(97, 122)) end
  return table.concat(t)
end
local function digits(n)
  local t = {{}}
  for i = 1, n do t[i] = string.char(math.random(48, 57)) end
  return table.concat(t)
end
local fill = {{
{fill}
}}
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
request = function()
  local b = string.gsub(body, "@(%a+)@", function(k) return fill[k]() end)
  return wrk.format("POST", "/fhir/Patient", nil, b)
end
"""


def scripts(ids: list[str], token: str) -> dict[str, tuple[str, str]]:
    update_body = json.dumps({**PATIENT, "id": "{id}"})
    return {
        "read": (
            "/fhir/Patient/x",
            lua_requests("GET", [f"/fhir/Patient/{i}" for i in ids], None, token),
        ),
        "create": (
            "/fhir/Patient",
            lua_requests("POST", ["/fhir/Patient"], json.dumps(PATIENT), token),
        ),
        "create-varied": ("/fhir/Patient", varied_lua(token)),
        "update": (
            "/fhir/Patient/x",
            lua_requests("PUT", [f"/fhir/Patient/{i}" for i in ids], update_body, token),
        ),
        "history": (
            "/fhir/Patient/x/_history",
            lua_requests("GET", [f"/fhir/Patient/{i}/_history" for i in ids[:100]], None, token),
        ),
    }


def hearth_instance(tmp: Path, database: str | None) -> tuple[Path, str]:
    """A new instance in ``tmp``: its home and the administrator's token."""
    home = tmp / "hearth"
    argv = [sys.executable, "-m", "hearth", "--home", str(home), "init", "--json"]
    if database:
        argv += ["--database", database]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return home, json.loads(out)["admin_token"]


def run_engine(engine: str, duration: float, repeats: int, seed_count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cleanup: list[str] = []
        if engine == "postgresql":
            hearth_db, name = temp_postgres_database()
            baseline_db, name2 = temp_postgres_database()
            cleanup += [name, name2]
        else:
            hearth_db = None
            baseline_db = f"sqlite:///{tmp / 'baseline.db'}"
        try:
            hearth_home, token = hearth_instance(tmp, hearth_db)
            hearth_port, baseline_port = free_port(), free_port()
            baseline_argv = [
                sys.executable,
                "-m",
                "bench.baseline",
                "--database",
                baseline_db,
                "--token",
                token,
                "--port",
                str(baseline_port),
            ]
            with (
                serve(
                    hearth_serve(hearth_home, hearth_port), hearth_port, "/fhir/metadata"
                ) as hearth,
                serve(baseline_argv, baseline_port, "/fhir/metadata") as baseline,
            ):
                runs: dict[str, dict[str, list[Any]]] = {
                    op: {"hearth": [], "baseline": []} for op in OPERATIONS
                }
                plans = {
                    "hearth": scripts(seed(hearth.base, token, seed_count), token),
                    "baseline": scripts(seed(baseline.base, token, seed_count), token),
                }
                for _ in range(repeats):
                    for op in OPERATIONS:
                        for system, server in (("hearth", hearth), ("baseline", baseline)):
                            path, lua = plans[system][op]
                            runs[op][system].append(wrk(server.base + path, lua, duration=duration))
                hearth_rss = hearth.rss_peak_kb
                hearth_all_rss = hearth.rss_peak_with_children_kb
                baseline_rss = baseline.rss_peak_kb
        finally:
            for name in cleanup:
                drop_postgres_database(name)
    summary = {}
    for op, systems in runs.items():
        h = median([r.requests_per_second for r in systems["hearth"]])
        b = median([r.requests_per_second for r in systems["baseline"]])
        summary[op] = {
            "hearth_rps": h,
            "baseline_rps": b,
            "ratio": h / b if b else float("nan"),
            "hearth_p50_ms": median([r.p50_ms for r in systems["hearth"]]),
            "hearth_p99_ms": median([r.p99_ms for r in systems["hearth"]]),
            "baseline_p50_ms": median([r.p50_ms for r in systems["baseline"]]),
            "baseline_p99_ms": median([r.p99_ms for r in systems["baseline"]]),
            # Non-2xx answers and socket errors, each system's own: a baseline whose concurrent
            # updates fail (SQLite "database is locked") answers those fast.
            "hearth_errors": sum(r.errors for r in systems["hearth"]),
            "baseline_errors": sum(r.errors for r in systems["baseline"]),
        }
    return {
        "runs": runs,
        "summary": summary,
        "hearth_rss_peak_mb": hearth_rss / 1024,
        "hearth_with_workers_rss_peak_mb": hearth_all_rss / 1024,
        "baseline_rss_peak_mb": baseline_rss / 1024,
    }


def hello_ceiling(duration: float, repeats: int) -> float:
    port = free_port()
    argv = [sys.executable, "-m", "bench.hello", "--port", str(port)]
    with serve(argv, port, "/fhir/metadata") as server:
        lua = lua_requests("GET", ["/fhir/Patient/hello"], None, "x")
        return median(
            [
                wrk(server.base + "/fhir/Patient/hello", lua, duration=duration).requests_per_second
                for _ in range(repeats)
            ]
        )


def main() -> None:
    duration = float(os.environ.get("HEARTH_BENCH_DURATION", "8"))
    repeats = int(os.environ.get("HEARTH_BENCH_REPEATS", "3"))
    seed_count = int(os.environ.get("HEARTH_BENCH_SEED", "1000"))
    engines = os.environ.get("HEARTH_BENCH_ENGINES", "sqlite,postgresql").split(",")
    results: dict[str, Any] = {"duration_s": duration, "repeats": repeats, "engines": {}}
    results["hello_rps"] = hello_ceiling(duration, repeats)
    rows = []
    for engine in engines:
        result = run_engine(engine, duration, repeats, seed_count)
        results["engines"][engine] = result
        for op, s in result["summary"].items():
            rows.append(
                [
                    engine,
                    op,
                    s["hearth_rps"],
                    s["baseline_rps"],
                    s["ratio"],
                    s["hearth_p50_ms"],
                    s["hearth_p99_ms"],
                    s["baseline_p50_ms"],
                    f"{s['hearth_errors']}/{s['baseline_errors']}",
                ]
            )
    path = write_results("core", results)
    print_table(
        f"Core: Hearth vs hand-rolled baseline (median of {repeats} x {duration:.0f}s, wrk -c16)",
        [
            "engine",
            "operation",
            "hearth req/s",
            "baseline req/s",
            "ratio",
            "hearth p50 ms",
            "hearth p99 ms",
            "baseline p50 ms",
            "errors hearth/baseline",
        ],
        rows,
    )
    rss = ", ".join(
        f"{e}: {r['hearth_rss_peak_mb']:.0f} MB ({r['hearth_with_workers_rss_peak_mb']:.0f} MB "
        "with index workers)"
        for e, r in results["engines"].items()
    )
    print(f"\nASGI hello ceiling: {results['hello_rps']:,.0f} req/s; Hearth peak RSS: {rss}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
