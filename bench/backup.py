"""Backup, verify and restore through the command line (issue 6), beside an engine snapshot.

``python -m bench backup``. A SQLite instance is filled with the search benchmark's population
(``HEARTH_BENCH_BACKUP_PATIENTS`` patients, default 2,000, with 5 observations each) by
``hearth import``; then, each as its own ``hearth`` process: a full backup, an incremental
after 1% of the patients changed, verify (hashes only), verify with the identity (every AEAD
tag and Merkle root), verify --deep, and restores into SQLite and PostgreSQL. Two baselines
run beside it in the same run: an engine snapshot (SQLite's online backup API copying the
database file) compressed with zstd (level 3), and restic (``bench/restic_baseline.py``)
backing up such a snapshot into a local repository, before and after the change, with
``restic check --read-data`` and ``restic restore`` as the counterparts of verify and restore.

Scale: ``HEARTH_BENCH_BACKUP_PATIENTS`` (default 2,000) and
``HEARTH_BENCH_BACKUP_OBS_PER_PATIENT`` (default 5). The restores (SQLite, ``restic restore``,
PostgreSQL, taken in turn) run ``HEARTH_BENCH_BACKUP_RESTORE_RUNS`` times (default 3); their
rows and ratios are the medians, and ``runs_wall_s`` keeps every run (0 skips them). The full
backup runs ``HEARTH_BENCH_BACKUP_FULL_RUNS`` times (default 1), alternating with restic's
full backup (into a fresh repository each run), medians likewise; with a baseline the two
Hearths take turns in ABBA order (this one first in even rounds). With
``HEARTH_BENCH_BACKUP_BASELINE_SRC`` naming another checkout's ``src`` (``git worktree add
/tmp/base BASE``, then ``/tmp/base/src``), each round also takes the full backup and restores
with that Hearth ("(baseline)" rows), so a change is measured before and after in the same
run. The 1% change updates 1% of the patients and 1% of the observations. With
``HEARTH_BENCH_BACKUP_REUSE=1`` the imported instance is kept in
``~/.cache/hearth-bench/backup-P-N-sqlite`` and copied for later runs (an import of 100,000
patients takes an hour on these machines).

Reported per step: wall seconds, CPU seconds of the process, peak RSS (VmHWM sampled every
50 ms) and bytes stored. Ratios use CPU seconds net of a ``hearth --version`` process's (the
interpreter and imports), since wall time on these shared machines follows their load. One run
of each step but the restores (these steps are long); the ratios are what to read.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import zstandard

from bench.common import (
    drop_postgres_database,
    print_table,
    temp_postgres_database,
    write_results,
)
from bench.restic_baseline import Restic
from bench.search import dataset


def run(home: Path, *args: str, source: str | None = None) -> dict[str, Any]:
    """One ``hearth`` command: its JSON output, wall and CPU seconds, peak RSS in MB. With
    ``source``, Hearth is imported from that ``src`` directory instead (a baseline)."""
    env = None
    if source is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.getcwd()])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            except OSError:
                return
            if match:
                peak[0] = max(peak[0], int(match.group(1)))
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"hearth {' '.join(args)} failed: {err.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        body = json.loads(out) if out.strip() else {}
    except ValueError:
        body = {}
    return {"wall_s": wall, "cpu_s": cpu, "rss_mb": peak[0] / 1024, "result": body}


def snapshot_baseline(db: Path, work: Path) -> dict[str, Any]:
    """SQLite's online backup of the live file, then zstd over the copy."""
    start = time.monotonic()
    cpu0 = time.process_time()
    copy = work / "snapshot.db"
    source = sqlite3.connect(db)
    target = sqlite3.connect(copy)
    with target:
        source.backup(target)
    source.close()
    target.close()
    compressed = work / "snapshot.db.zst"
    with copy.open("rb") as src, compressed.open("wb") as dst:
        zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    return {
        "wall_s": time.monotonic() - start,
        "cpu_s": time.process_time() - cpu0,
        "bytes": compressed.stat().st_size,
        "db_bytes": copy.stat().st_size,
    }


def changed_patients(folder: Path, work: Path, fraction: float) -> Path:
    """An NDJSON of ``fraction`` of the patients, each with one element changed."""
    out = work / "changed.ndjson"
    lines = (folder / "patients.ndjson").read_bytes().splitlines()
    step = max(1, round(1 / fraction))
    with out.open("wb") as handle:
        for line in lines[::step]:
            patient = orjson.loads(line)
            patient["active"] = False
            handle.write(orjson.dumps(patient) + b"\n")
    return out


def changed_observations(folder: Path, work: Path, fraction: float) -> Path:
    """An NDJSON of ``fraction`` of the observations, each with a new value."""
    out = work / "changed-observations.ndjson"
    step = max(1, round(1 / fraction))
    with (folder / "observations.ndjson").open("rb") as source, out.open("wb") as handle:
        for index, line in enumerate(source):
            if index % step == 0:
                observation = orjson.loads(line)
                observation["valueQuantity"]["value"] = round(
                    observation["valueQuantity"]["value"] + 0.1, 1
                )
                handle.write(orjson.dumps(observation) + b"\n")
    return out


def instance(folder: Path, home: Path, steps: dict[str, dict[str, Any]]) -> None:
    """``home`` with the population imported: fresh, or copied from the reuse cache."""
    cache = folder.parent / f"backup-{folder.name.removeprefix('search-')}-sqlite" / "home"
    if os.environ.get("HEARTH_BENCH_BACKUP_REUSE") == "1" and cache.is_dir():
        shutil.copytree(cache, home)
        run(home, "migrate")  # the cache may predate newer migrations
        with sqlite3.connect(home / "data" / "hearth.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    run(home, "init", "--json")
    steps["import"] = run(home, "import", str(folder / "patients.ndjson"), "--json")
    steps["import"] = run(home, "import", str(folder / "observations.ndjson"), "--json")
    if os.environ.get("HEARTH_BENCH_BACKUP_REUSE") == "1":
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(home, cache)


def stored_bytes(result: dict[str, Any]) -> int:
    return int(result.get("result", {}).get("stored_bytes", 0))


def _figures(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k != "result"}


def median_step(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one step: the medians of wall and CPU seconds, the highest peak RSS,
    every run's wall seconds, and the first run's result."""
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "rss_mb": max(r.get("rss_mb", 0.0) for r in runs),
        "runs_wall_s": [round(r["wall_s"], 2) for r in runs],
        "result": runs[0].get("result", {}),
        **({"bytes": runs[0]["bytes"]} if "bytes" in runs[0] else {}),
    }


def main() -> None:
    patients = int(os.environ.get("HEARTH_BENCH_BACKUP_PATIENTS", "2000"))
    restore_runs = int(os.environ.get("HEARTH_BENCH_BACKUP_RESTORE_RUNS", "3"))
    full_runs = max(1, int(os.environ.get("HEARTH_BENCH_BACKUP_FULL_RUNS", "1")))
    baseline = os.environ.get("HEARTH_BENCH_BACKUP_BASELINE_SRC")
    per_patient = int(os.environ.get("HEARTH_BENCH_BACKUP_OBS_PER_PATIENT", "5"))
    folder = dataset(patients, per_patient)
    load_start = os.getloadavg()
    steps: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hearth-bench-backup-") as tmp:
        work = Path(tmp)
        home = work / "home"
        identity = work / "offline" / "id.key"
        instance(folder, home, steps)
        # What every hearth process costs before it does anything: subtracted below.
        steps["start-up (hearth --version)"] = run(home, "--version")
        run(home, "keys", "backup-recipient", "--identity-out", str(identity))
        db = home / "data" / "hearth.db"
        db_bytes = db.stat().st_size
        # Full backups alternate with the baseline's and with restic's (a fresh repository
        # each time, so that nothing deduplicates), run by run, so that all see the same load.
        fulls: dict[str, list[dict[str, Any]]] = {}
        full_sources: dict[str, str | None] = {"full": None}
        if baseline:
            full_sources["full (baseline)"] = baseline
        restic = None
        for i in range(full_runs):
            # ABBA: this Hearth first in even rounds, the baseline first in odd ones.
            order = list(full_sources.items())
            if i % 2:
                order.reverse()
            for label, source in order:
                args = ("backup", "create", "--full", "--json")
                fulls.setdefault(label, []).append(run(home, *args, source=source))
            if restic is not None:
                shutil.rmtree(restic.repo)
            restic = Restic(work, f"restic-repo-{i}")
            fulls.setdefault("restic full (snapshot + backup)", []).append(
                restic.backup_database(db)
            )
        assert restic is not None
        for label, made_runs in fulls.items():
            steps[label] = median_step(made_runs) if full_runs > 1 else made_runs[0]
        steps["baseline snapshot+zstd"] = snapshot_baseline(db, work)
        (work / "snapshot.db").unlink()
        run(home, "import", str(changed_patients(folder, work, 0.01)), "--json")
        run(home, "import", str(changed_observations(folder, work, 0.01)), "--json")
        steps["incremental (1%)"] = run(home, "backup", "create", "--json")
        steps["restic incremental (1%)"] = restic.backup_database(db)
        ident = ["--identity", str(identity)]
        steps["verify (hashes)"] = run(home, "backup", "verify", "--json")
        steps["verify (identity)"] = run(home, "backup", "verify", "--json", *ident)
        steps["verify --deep"] = run(home, "backup", "verify", "--deep", "--json", *ident)
        steps["restic check --read-data"] = restic.check()
        head = steps["incremental (1%)"]["result"]["backup_id"]

        def restore_sqlite(source: str | None) -> dict[str, Any]:
            into = work / "r.db"
            try:
                return run(
                    home, "backup", "restore", head, "--into", f"sqlite:///{into}", "--json",
                    *ident, source=source,
                )  # fmt: skip
            finally:
                into.unlink(missing_ok=True)

        def restore_postgresql(source: str | None) -> dict[str, Any]:
            url, name = temp_postgres_database()
            try:
                return run(
                    home, "backup", "restore", head, "--into", url, "--json", *ident,
                    source=source,
                )  # fmt: skip
            finally:
                drop_postgres_database(name)

        # Restores alternate with restic's (and the baseline's), run by run, so that all see
        # the same load.
        sources: dict[str, str | None] = {"": None}
        if baseline:
            sources[" (baseline)"] = baseline
        runs: dict[str, list[dict[str, Any]]] = {}
        pg_reachable = True
        for _ in range(restore_runs):
            for suffix, source in sources.items():
                runs.setdefault("restore sqlite" + suffix, []).append(restore_sqlite(source))
            runs.setdefault("restic restore", []).append(restic.restore())
            for suffix, source in sources.items():
                if not pg_reachable:
                    break
                try:
                    made = restore_postgresql(source)
                except Exception as exc:  # noqa: BLE001 - a missing server is reported
                    print(f"PostgreSQL not reachable ({type(exc).__name__}); skipping it")
                    pg_reachable = False
                else:
                    runs.setdefault("restore postgresql" + suffix, []).append(made)
        for label, made_runs in runs.items():
            steps[label] = median_step(made_runs)
    versions = steps["full"]["result"]["sequence"]["to"]
    full_bytes = stored_bytes(steps["full"])
    incr_bytes = stored_bytes(steps["incremental (1%)"])
    base = steps["baseline snapshot+zstd"]
    rows = []
    for label, step in steps.items():
        if label == "import":
            continue
        size = step.get("bytes") or stored_bytes(step) or ""
        rows.append(
            [
                label,
                round(step["wall_s"], 2),
                round(step["cpu_s"], 2),
                round(step.get("rss_mb", 0.0), 1) or "",
                size,
            ]
        )
    print_table(
        f"backup: {patients} patients, {patients * per_patient} observations, {versions} "
        f"versions, SQLite database {db_bytes:,} bytes; {restic.version}",
        ["step", "wall s", "cpu s", "peak RSS MB", "bytes"],
        rows,
    )
    startup = steps["start-up (hearth --version)"]["cpu_s"]

    def net(label: str) -> float:
        return max(steps[label]["cpu_s"] - startup, 1e-9)

    restic_full = steps["restic full (snapshot + backup)"]
    restic_incr = steps["restic incremental (1%)"]
    ratios = {
        # > 1: Hearth faster than restic (restic's side includes taking the engine snapshot).
        "full_throughput_vs_restic_wall": restic_full["wall_s"] / steps["full"]["wall_s"],
        "full_throughput_vs_restic_cpu_net": restic_full["cpu_s"] / net("full"),
        "incremental_bytes_vs_full_restic": restic_incr["bytes"] / restic_full["bytes"],
        "incremental_bytes_vs_restic_incremental": incr_bytes / restic_incr["bytes"],
        "verify_deep_vs_restic_check_wall": steps["restic check --read-data"]["wall_s"]
        / steps["verify --deep"]["wall_s"],
        "full_vs_snapshot_cpu_net": net("full") / base["cpu_s"] if base["cpu_s"] else None,
        "full_bytes_vs_snapshot": full_bytes / base["bytes"],
        "incremental_bytes_vs_full": incr_bytes / full_bytes,
        "incremental_cpu_vs_full_net": net("incremental (1%)") / net("full"),
        "full_versions_per_cpu_s_net": versions / net("full"),
        "verify_identity_versions_per_cpu_s_net": versions / net("verify (identity)"),
    }
    if "restore sqlite" in steps:
        ratios["restore_vs_restic_restore_wall"] = (
            steps["restic restore"]["wall_s"] / steps["restore sqlite"]["wall_s"]
        )
        ratios["restore_versions_per_cpu_s_net"] = versions / net("restore sqlite")
    if "full (baseline)" in steps:
        # > 1: this Hearth's full backup is faster than the baseline's.
        ratios["full_vs_baseline_wall"] = (
            steps["full (baseline)"]["wall_s"] / steps["full"]["wall_s"]
        )
        ratios["full_vs_baseline_cpu_net"] = net("full (baseline)") / net("full")
        ratios["full_baseline_throughput_vs_restic_wall"] = (
            restic_full["wall_s"] / steps["full (baseline)"]["wall_s"]
        )
    if "restore sqlite (baseline)" in steps:
        # > 1: this Hearth restores faster than the baseline's.
        ratios["restore_sqlite_vs_baseline_wall"] = (
            steps["restore sqlite (baseline)"]["wall_s"] / steps["restore sqlite"]["wall_s"]
        )
        ratios["restore_sqlite_vs_baseline_cpu_net"] = net("restore sqlite (baseline)") / net(
            "restore sqlite"
        )
        ratios["restore_baseline_vs_restic_restore_wall"] = (
            steps["restic restore"]["wall_s"] / steps["restore sqlite (baseline)"]["wall_s"]
        )
    if "restore postgresql (baseline)" in steps and "restore postgresql" in steps:
        ratios["restore_postgresql_vs_baseline_wall"] = (
            steps["restore postgresql (baseline)"]["wall_s"] / steps["restore postgresql"]["wall_s"]
        )
        ratios["restore_postgresql_vs_baseline_cpu_net"] = net(
            "restore postgresql (baseline)"
        ) / net("restore postgresql")
    load_end = os.getloadavg()
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_end}")
    write_results(
        "backup",
        {
            "patients": patients,
            "observations": patients * per_patient,
            "versions": versions,
            "database_bytes": db_bytes,
            "restic": restic.version,
            "steps": {
                k: {kk: vv for kk, vv in v.items() if kk != "result"} for k, v in steps.items()
            },
            "full_bytes": full_bytes,
            "incremental_bytes": incr_bytes,
            "ratios": ratios,
            "load_average": {"start": load_start, "end": load_end},
        },
    )
