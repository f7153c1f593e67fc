"""``hearth serve`` runs the integrity scanner beside requests: a record damaged while the server
runs is found, stored and alarmed without anyone asking, and the server stops cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from hearth.cli import main
from tests.integration.conftest import free_port

HEARTH = [sys.executable, "-m", "hearth"]


def test_the_served_app_scans_in_the_background(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(main, ["--home", str(home), "init", "--quiet"]).exit_code == 0
    assert (
        runner.invoke(main, ["--home", str(home), "demo", "load", "--patients", "1"]).exit_code == 0
    )
    config = home / "hearth.toml"
    config.write_text(config.read_text() + "\n[integrity]\nscan_interval_seconds = 1\n")
    db = create_engine(f"sqlite:///{home / 'data' / 'hearth.db'}")
    port = free_port()
    process = subprocess.Popen(
        [*HEARTH, "--home", str(home), "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with db.begin() as conn:
            conn.execute(
                text("UPDATE resource_version SET mac = :m WHERE seq = 2"), {"m": b"\x00" * 32}
            )
        deadline = time.monotonic() + 60
        found: list[tuple[str, int]] = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            with db.begin() as conn:
                found = [
                    (k, int(s))
                    for k, s in conn.execute(
                        text("SELECT kind, seq FROM integrity_finding WHERE state = 'open'")
                    )
                ]
        assert found == [("version", 2)]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    # Stopped by SIGTERM (uvicorn re-raises it after a graceful shutdown), not hung or crashed.
    assert process.returncode in (0, -15), output
    assert "Traceback" not in output
    assert "integrity.mismatch" in output  # the alarm, through the log sink
    with db.begin() as conn:
        scans = conn.execute(
            text("SELECT COUNT(*) FROM audit_entry WHERE action = 'integrity.scan'")
        ).scalar_one()
    db.dispose()
    assert scans >= 1
