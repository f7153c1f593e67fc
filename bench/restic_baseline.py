"""restic as the baseline of the backup benchmark: what a file-level tool does with the same
database. An engine snapshot (SQLite's online backup API, what the sqlite3 shell's ``.backup``
does) is taken, then ``restic backup`` stores it in a local repository (content-defined
chunking, deduplication, compression, encryption); after a change the same again, so the
repository grows by what restic could not deduplicate. ``restic check --read-data`` and
``restic restore`` are the counterparts of verify and restore.

Each restic command runs under ``/usr/bin/time`` (wall, CPU, peak RSS); sizes are what the
repository directory holds on disk. Used by ``bench/backup.py``; no ``main`` of its own.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Restic", "du"]

RESTIC = shutil.which("restic") or "/usr/bin/restic"
TIME = "/usr/bin/time"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv``; wall and CPU seconds and peak RSS (MB) of the process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.monotonic()
        done = subprocess.run(
            [TIME, "-f", "%M %U %S", "-o", report.name, *argv],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
        wall = time.monotonic() - start
        fields = report.read().split()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {done.stderr[-2000:]}")
    return {
        "wall_s": wall,
        "cpu_s": float(fields[-2]) + float(fields[-1]),
        "rss_mb": int(fields[-3]) / 1024,
    }


class Restic:
    """A restic repository in ``work/<name>`` (password only for the benchmark)."""

    def __init__(self, work: Path, name: str = "restic-repo") -> None:
        self.work = work
        self.repo = work / name
        self.env = {"RESTIC_PASSWORD": "bench-only", "RESTIC_REPOSITORY": str(self.repo)}
        subprocess.run(
            [RESTIC, "init"], check=True, capture_output=True, env={**os.environ, **self.env}
        )
        self.version = subprocess.run(
            [RESTIC, "version"], check=True, capture_output=True, text=True
        ).stdout.strip()

    def backup_database(self, db: Path) -> dict[str, Any]:
        """Snapshot ``db`` with SQLite's backup API, then ``restic backup`` the copy. Wall and
        CPU include the snapshot; ``bytes`` is how much the repository grew."""
        copy = self.work / "restic-snapshot.db"
        copy.unlink(missing_ok=True)
        start = time.monotonic()
        cpu0 = time.process_time()
        source = sqlite3.connect(db)
        target = sqlite3.connect(copy)
        with target:
            source.backup(target)
        source.close()
        target.close()
        snapshot_wall = time.monotonic() - start
        snapshot_cpu = time.process_time() - cpu0
        before = du(self.repo)
        step = timed([RESTIC, "backup", "--quiet", str(copy)], self.env)
        step["bytes"] = du(self.repo) - before
        step["snapshot_s"] = snapshot_wall
        step["wall_s"] += snapshot_wall
        step["cpu_s"] += snapshot_cpu
        copy.unlink()
        return step

    def check(self) -> dict[str, Any]:
        return timed([RESTIC, "check", "--read-data"], self.env)

    def restore(self) -> dict[str, Any]:
        into = self.work / "restic-restore"
        step = timed([RESTIC, "restore", "latest", "--target", str(into)], self.env)
        shutil.rmtree(into, ignore_errors=True)
        return step
