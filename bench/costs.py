"""Where a read and a create spend their CPU (issue 2): process CPU time, in process, no HTTP.

``python -m bench costs``. Throughput on a shared machine moves with its load; the CPU time
spent on one operation moves much less, so this table explains the ratios of ``bench.core``:
each safeguard's cost per operation beside the whole operation's, and beside a plain insert or
select of the same JSON in SQLite (what ``bench/baseline.py`` does per request).

Figures are medians over ``HEARTH_BENCH_REPEATS`` (default 7) batches of ``HEARTH_BENCH_N``
(default 200) operations, in microseconds of process CPU time per operation: every thread
counts, since a read's audit entry is appended by the group-commit thread.
"""

from __future__ import annotations

import copy
import cProfile
import os
import pstats
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import print_table, write_results
from bench.core import PATIENT
from hearth.domain import Principal, ResourceRef
from hearth.fhir.search.index import index_resource
from hearth.settings import load_settings
from hearth.wiring import ADMIN_ROLE, Container, init_instance


def cpu_us(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Median thread CPU microseconds per call of ``fn`` over ``repeats`` batches of ``n``."""
    batches = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            fn()
        batches.append((time.process_time() - start) / n * 1e6)
    return statistics.median(batches)


def baseline_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE resource (id TEXT PRIMARY KEY, body BLOB NOT NULL)")
    return conn


def main() -> None:
    n = int(os.environ.get("HEARTH_BENCH_N", "200"))
    repeats = int(os.environ.get("HEARTH_BENCH_REPEATS", "7"))
    with tempfile.TemporaryDirectory(prefix="hearth-costs-") as tmp:
        home = Path(tmp) / "hearth"
        init_instance(home, database_url=None)
        container = Container(load_settings(home))
        try:
            rows = measure(container, Path(tmp), n, repeats)
        finally:
            container.close()
    print_table(
        f"CPU per operation (process time, median of {repeats} x {n}, microseconds)",
        ["operation", "us", "share of the Hearth operation"],
        [(name, round(us), share) for name, us, share in rows],
    )
    write_results(
        "costs", {"n": n, "repeats": repeats, "rows": [list(r) for r in rows], "unit": "us"}
    )


def measure(container: Container, tmp: Path, n: int, repeats: int) -> list[tuple[str, float, str]]:
    admin = Principal(subject="bench", roles=frozenset({ADMIN_ROLE}), source="127.0.0.1")
    records = container.records(admin)
    ids = [records.create("Patient", copy.deepcopy(PATIENT)).res_id for _ in range(100)]
    keys = container.keyring
    counter = iter(range(10**9))

    def create() -> None:
        records.create("Patient", copy.deepcopy(PATIENT))

    def read() -> None:
        records.read("Patient", ids[next(counter) % len(ids)])

    # The pieces, each on its own.
    entries = index_resource({**PATIENT, "id": ids[0]})
    body = orjson.dumps({**PATIENT, "id": ids[0]})
    aad = ResourceRef("Patient", ids[0]).aad(1)
    sealed = keys.seal_resource(body, aad=aad, random=container.random)

    def index() -> None:
        index_resource({**PATIENT, "id": ids[0]})

    def blind() -> None:
        keys.blind_many(entries.keys)

    def seal_and_mac() -> None:
        keys.seal_resource(body, aad=aad, random=container.random)
        keys.mac(
            seq=1, res_type="Patient", res_id=ids[0], version=1, deleted=False, ts_us=0, body=body
        )

    def open_and_check() -> None:
        keys.open_resource(sealed, aad=aad)

    plain = baseline_db(tmp / "baseline.db")
    plain_ids = iter(range(10**9))
    raw = orjson.dumps(PATIENT)

    def baseline_create() -> None:
        plain.execute("BEGIN IMMEDIATE")
        plain.execute("INSERT INTO resource VALUES (?, ?)", (str(next(plain_ids)), raw))
        plain.execute("COMMIT")

    def baseline_read() -> None:
        plain.execute("SELECT body FROM resource WHERE id = ?", ("1",)).fetchone()

    results: dict[str, float] = {}
    for name, fn in [
        ("Hearth create (validate, decide, seal, MAC, index, audit, commit)", create),
        ("  index keys of the Patient (index_resource)", index),
        (f"  blind the {len(entries.keys)} index keys (HMAC-SHA-256)", blind),
        ("  seal (AES-256-GCM) and MAC one version", seal_and_mac),
        ("plain SQLite insert + commit of the same JSON", baseline_create),
        ("Hearth read (decide, open, check MAC, audit entry durable)", read),
        ("  open one version", open_and_check),
        ("plain SQLite select by id", baseline_read),
    ]:
        results[name] = cpu_us(fn, n, repeats)
    plain.close()
    profiled = profile_create(create, n)
    rows: list[tuple[str, float, str]] = []
    whole: dict[str, Any] = {"create": None, "read": None}
    for name, us in results.items():
        if name.startswith("Hearth create"):
            whole["create"] = us
            current = "create"
        elif name.startswith("Hearth read"):
            whole["read"] = us
            current = "read"
        elif not name.startswith("  "):
            current = ""
        share = f"{us / whole[current]:.0%}" if current and name.startswith("  ") else ""
        rows.append((name, us, share))
        if name.startswith("Hearth create"):
            for part, fraction in profiled:
                rows.append((f"  {part} (profiled share)", fraction * us, f"{fraction:.0%}"))
    return rows


# Where a create's time goes, by the functions that do each step (cumulative, so each part
# includes its SQL); the commit's fsync wait is left out of the whole.
_CREATE_PARTS = {
    "validate the body against R4": "records.py:_checked",
    "decide (access control) and guard": "repository.py:_check",
    "index keys and their blinding": "repository.py:index_row",
    "write the index rows": "repository.py:flush_index",
    "append, chain and sign the audit entry": "audit.py:_append",
    "write the version row": "store.py:insert_version",
}


def profile_create(create: Callable[[], None], n: int) -> list[tuple[str, float]]:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        create()
    profile.disable()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative: dict[str, float] = {}
    commit = 0.0
    total = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.items():
        key = f"{Path(filename).name}:{function}"
        cumulative[key] = cumulative.get(key, 0.0) + ct
        if key == "records.py:create" and "services" in filename:
            total = ct
        if function == "<method 'commit' of 'sqlite3.Connection' objects>":
            commit = ct
    whole = max(total - commit, 1e-9)
    return [(part, cumulative.get(key, 0.0) / whole) for part, key in _CREATE_PARTS.items()]


if __name__ == "__main__":
    main()
