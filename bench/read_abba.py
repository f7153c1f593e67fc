"""Read-by-id before and after a change, side by side (issue 2 item 11).

``HEARTH_BENCH_BEFORE_SRC=/tmp/base/src python -m bench read_abba`` (after ``git worktree add
/tmp/base BASE``): two ``hearth serve`` processes, one importing Hearth from that ``src`` ("A",
before) and one from this checkout ("B", after), and ``bench/baseline.py``, all on the same
engine, each seeded alike. Rounds alternate the order (A, baseline, B, B, baseline, A; then B
first), ``wrk -c16`` for ``HEARTH_BENCH_DURATION`` seconds (default 5) per run,
``HEARTH_BENCH_REPEATS`` rounds (default 3), ``HEARTH_BENCH_ENGINES`` (default ``sqlite``),
``HEARTH_BENCH_SEED`` resources (default 200). Per run: requests per second, and the server
process's CPU time per request (user + system, from ``/proc``, every thread: the event loop,
the request threads and the audit writer), which the machine's load moves far less than
throughput; the load average is kept beside each run. Without ``HEARTH_BENCH_BEFORE_SRC`` it
says so and does nothing (``make bench`` runs every module).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    drop_postgres_database,
    free_port,
    lua_requests,
    print_table,
    serve,
    temp_postgres_database,
    write_results,
    wrk,
)
from bench.core import seed

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_engine(
    engine: str, before_src: str, rounds: int, duration: float, seed_count: int
) -> dict[str, Any]:
    here = os.getcwd()
    env = {
        "A": {"PYTHONPATH": os.pathsep.join([before_src, here])},
        "B": {
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), here])
        },
    }
    with tempfile.TemporaryDirectory(prefix="hearth-read-abba-") as tmp_name:
        tmp = Path(tmp_name)
        cleanup: list[str] = []
        databases: dict[str, str | None] = {}
        for name in ("A", "B", "base"):
            if engine == "postgresql":
                url, db = temp_postgres_database()
                cleanup.append(db)
                databases[name] = url
            else:
                databases[name] = f"sqlite:///{tmp / 'baseline.db'}" if name == "base" else None
        try:
            return _measure(tmp, env, databases, rounds, duration, seed_count)
        finally:
            for db in cleanup:
                drop_postgres_database(db)


def _measure(
    tmp: Path,
    env: dict[str, dict[str, str]],
    databases: dict[str, str | None],
    rounds: int,
    duration: float,
    seed_count: int,
) -> dict[str, Any]:
    tokens: dict[str, str] = {}
    argv: dict[str, list[str]] = {}
    ports = {name: free_port() for name in ("A", "B", "base")}
    for name in ("A", "B"):
        home = tmp / name
        init = [sys.executable, "-m", "hearth", "--home", str(home), "init", "--json"]
        if databases[name]:
            init += ["--database", str(databases[name])]
        out = subprocess.run(
            init, check=True, capture_output=True, text=True, env={**os.environ, **env[name]}
        ).stdout
        tokens[name] = json.loads(out)["admin_token"]
        argv[name] = [sys.executable, "-m", "hearth", "--home", str(home), "serve"]
        argv[name] += ["--log-level", "warning", "--port", str(ports[name])]
    tokens["base"] = tokens["A"]
    argv["base"] = [sys.executable, "-m", "bench.baseline", "--database", str(databases["base"])]
    argv["base"] += ["--token", tokens["base"], "--port", str(ports["base"])]
    runs: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "cpu_us": [], "p50_ms": [], "load": []} for name in ("A", "B", "base")
    }
    with (
        serve(argv["A"], ports["A"], "/fhir/metadata", env=env["A"]) as a,
        serve(argv["B"], ports["B"], "/fhir/metadata", env=env["B"]) as b,
        serve(argv["base"], ports["base"], "/fhir/metadata") as base,
    ):
        servers = {"A": a, "B": b, "base": base}
        scripts = {}
        for name, server in servers.items():
            ids = seed(server.base, tokens[name], seed_count)
            paths = [f"/fhir/Patient/{i}" for i in ids]
            scripts[name] = lua_requests("GET", paths, None, tokens[name])
        for name, server in servers.items():  # warm up
            wrk(server.base + "/fhir/Patient/x", scripts[name], duration=2)
        for n in range(rounds):
            first, second = ("A", "B") if n % 2 == 0 else ("B", "A")
            for name in (first, "base", second, second, "base", first):
                server = servers[name]
                before = cpu_seconds(server.process.pid)
                result = wrk(server.base + "/fhir/Patient/x", scripts[name], duration=duration)
                spent = cpu_seconds(server.process.pid) - before
                runs[name]["rps"].append(result.requests_per_second)
                runs[name]["cpu_us"].append(spent / max(result.requests, 1) * 1e6)
                runs[name]["p50_ms"].append(result.p50_ms)
                runs[name]["load"].append(load_average())
    medians = {
        name: {metric: statistics.median(values) for metric, values in metrics.items()}
        for name, metrics in runs.items()
    }
    return {
        "runs": runs,
        "median": medians,
        "ratio_before": medians["A"]["rps"] / medians["base"]["rps"],
        "ratio_after": medians["B"]["rps"] / medians["base"]["rps"],
    }


def main() -> None:
    before_src = os.environ.get("HEARTH_BENCH_BEFORE_SRC")
    if not before_src:
        print("read_abba: set HEARTH_BENCH_BEFORE_SRC to another checkout's src to compare")
        return
    rounds = int(os.environ.get("HEARTH_BENCH_REPEATS", "3"))
    duration = float(os.environ.get("HEARTH_BENCH_DURATION", "5"))
    seed_count = int(os.environ.get("HEARTH_BENCH_SEED", "200"))
    engines = os.environ.get("HEARTH_BENCH_ENGINES", "sqlite").split(",")
    results: dict[str, Any] = {"before_src": before_src, "rounds": rounds, "engines": {}}
    rows = []
    for engine in engines:
        result = run_engine(engine, before_src, rounds, duration, seed_count)
        results["engines"][engine] = result
        m = result["median"]
        for name, label in (("A", "before"), ("B", "after"), ("base", "baseline")):
            s = m[name]
            ratio = s["rps"] / m["base"]["rps"]
            rows.append([engine, label, s["rps"], ratio, s["cpu_us"], s["p50_ms"], s["load"]])
    path = write_results("read_abba", results)
    print_table(
        f"Read by id, before/after (ABBA, median of {rounds} rounds x {duration:.0f}s, wrk -c16)",
        ["engine", "server", "req/s", "ratio", "CPU us/req", "p50 ms", "load"],
        rows,
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
