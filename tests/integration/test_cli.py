"""The command line: every verb as an operator uses it, including its failures."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx2 as httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from hearth.cli import main
from hearth.cli.common import PIPE_CLOSED_EXIT, handle_errors
from tests.integration.conftest import free_port
from tests.support import cli, self_signed

HEARTH = [sys.executable, "-m", "hearth"]


run = cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = run(home, "init", "--json")
    assert code == 0, out
    return home


def test_init_prints_json_with_base_url_and_token(tmp_path: Path) -> None:
    code, out = run(tmp_path / "h", "init", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["base_url"] == "http://127.0.0.1:8080/fhir"
    assert result["admin_token"].startswith("hrt_")
    key = tmp_path / "h" / "keys" / "kek.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "h" / "data" / "kek.key").exists()


def test_init_refuses_an_existing_instance(home: Path) -> None:
    code, out = run(home, "init")
    assert code == 1
    assert "already holds a Hearth instance" in out


def test_commands_without_an_instance_say_what_to_do(tmp_path: Path) -> None:
    code, out = run(tmp_path / "nothing", "integrity", "verify")
    assert code == 1
    assert "hearth --home" in out
    assert "init" in out
    assert "Traceback" not in out


def test_every_command_has_help_with_an_example() -> None:
    def leaves(command: click.Command, path: list[str]) -> list[list[str]]:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            found = []
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, [*path, name]
                found.extend(leaves(sub, [*path, name]))
            return found
        return [path]

    paths = leaves(main, [])
    assert ["backup", "create"] in paths
    assert ["serve"] in paths
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, path


def test_a_backup_loads_neither_the_web_server_nor_the_sign_in_services(
    home: Path, tmp_path: Path
) -> None:
    """``hearth backup create`` imports its own verb only, and the container builds its core
    only: no web framework, OAuth, sign-in or Alembic modules (docs/design.md, "Start-up")."""
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(tmp_path / "id"))
    assert code == 0, out
    probe = (
        "import sys\n"
        "from hearth.cli import main\n"
        "try:\n"
        f"    main(['--home', {str(home)!r}, 'backup', 'create', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('hearth.web', 'hearth.cli.serve', 'hearth.services.oauth', 'hearth.services"
        ".signin', 'hearth.services.users', 'starlette', 'uvicorn', 'webauthn', 'alembic')\n"
        "print('loaded:', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert '"kind": "full"' in done.stdout
    assert "loaded: []" in done.stdout, done.stdout[-500:]


def test_demo_load_then_integrity_and_audit_verify(home: Path) -> None:
    code, out = run(home, "demo", "load", "--patients", "5")
    assert code == 0, out
    assert "Loaded 5 synthetic patients" in out
    code, out = run(home, "integrity", "verify", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert report["versions"] > 5
    code, out = run(home, "audit", "verify")
    assert code == 0
    assert "intact" in out


def test_integrity_verify_exits_non_zero_and_names_the_row(home: Path) -> None:
    run(home, "demo", "load", "--patients", "2")
    engine = create_engine(f"sqlite:///{home / 'data' / 'hearth.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE resource_version SET mac = :m WHERE seq = 4"), {"m": b"x" * 32})
    engine.dispose()
    code, out = run(home, "integrity", "verify")
    assert code == 1
    assert "version seq 4" in out
    assert "MAC does not match" in out


def test_key_rotation_reseal_and_retire(home: Path) -> None:
    run(home, "demo", "load", "--patients", "2")
    code, out = run(home, "keys", "list", "--json")
    keys = json.loads(out)
    old_data = next(k["id"] for k in keys if k["purpose"] == "data" and k["state"] == "active")
    code, out = run(home, "keys", "rotate")
    assert code == 0, out
    code, out = run(home, "keys", "retire", str(old_data))
    assert code == 1
    assert "still seals" in out
    run(home, "demo", "load", "--patients", "1")  # new writes use the new key
    code, out = run(home, "keys", "reseal", str(old_data))
    assert code == 0, out
    code, out = run(home, "keys", "retire", str(old_data))
    assert code == 0, out
    keys = json.loads(run(home, "keys", "list", "--json")[1])
    assert next(k for k in keys if k["id"] == old_data)["state"] == "retired"
    assert run(home, "integrity", "verify")[0] == 0
    # MAC keys retire too: reseal checks each MAC and makes it again under the active key.
    old_mac = next(k["id"] for k in keys if k["purpose"] == "mac" and k["state"] == "decrypt-only")
    code, out = run(home, "keys", "retire", str(old_mac))
    assert code == 1
    assert "still MACs" in out
    assert run(home, "keys", "reseal", str(old_mac))[0] == 0
    code, out = run(home, "keys", "retire", str(old_mac))
    assert code == 0, out
    assert run(home, "integrity", "verify")[0] == 0
    keys = json.loads(run(home, "keys", "list", "--json")[1])
    active_data = next(k for k in keys if k["purpose"] == "data" and k["state"] == "active")
    assert active_data["seals"] > 0


def test_kek_rewrap(home: Path, tmp_path: Path) -> None:
    run(home, "demo", "load", "--patients", "1")
    new_key = tmp_path / "offsite" / "kek2.key"
    code, out = run(home, "keys", "rewrap", "--new-key-file", str(new_key))
    assert code == 0, out
    # hearth.toml now names the new key file, and is still private.
    config = home / "hearth.toml"
    assert f'file = "{new_key}"' in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    assert run(home, "integrity", "verify")[0] == 0
    (home / "keys" / "kek.key").unlink()
    assert run(home, "integrity", "verify")[0] == 0


def test_wrong_or_open_key_file_is_refused(home: Path) -> None:
    key = home / "keys" / "kek.key"
    key.chmod(0o644)
    code, out = run(home, "integrity", "verify")
    assert code == 1
    assert "chmod 600" in out
    key.chmod(0o600)
    key.write_text("00" * 32)
    code, out = run(home, "integrity", "verify")
    assert code == 1
    assert "does not open this instance's keys" in out


def test_serve_refuses_a_public_address_without_tls(home: Path) -> None:
    code, out = run(home, "serve", "--host", "0.0.0.0")  # noqa: S104 - refused, never bound
    assert code == 2
    assert "without TLS" in out


def test_serve_over_tls_with_a_one_time_admin_credential(home: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            *HEARTH,
            "--home",
            str(home),
            "serve",
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--issue-admin-credential",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert f"https://127.0.0.1:{port}/fhir" in lines[0]
        token = lines[1].rsplit(" ", 1)[1].strip()
        deadline = time.monotonic() + 15
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(cert)),
            base_url=f"https://localhost:{port}",
        ) as http:
            while True:
                try:
                    response = http.get(
                        "/fhir/Patient/nope", headers={"Authorization": f"Bearer {token}"}
                    )
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        assert response.status_code == 404
        assert response.headers["strict-transport-security"].startswith("max-age=")
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_serve_refuses_a_busy_port_before_announcing_anything(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = run(home, "serve", "--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out
    assert "serving" not in out


@pytest.mark.parametrize("port", ["0", "99999", "-1"])
def test_serve_refuses_a_port_out_of_range(home: Path, port: str) -> None:
    code, out = run(home, "serve", "--port", port)
    assert code == 2
    assert "1<=x<=65535" in out


def test_a_failed_init_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "new"
    code, out = run(home, "init", "--database", "bogus://x")
    assert code == 1
    assert "HRT-0113" in out
    assert not home.exists()
    port = free_port()  # nothing listens there
    code, out = run(home, "init", "--database", f"postgresql://u:secret@127.0.0.1:{port}/nodb")
    assert code == 1
    assert "Cannot connect to postgresql at 127.0.0.1" in out
    assert "HRT-0504" in out
    assert "secret" not in out
    assert not home.exists()
    # A folder that was there before is kept, emptied of what init made.
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    code, _ = run(home, "init", "--database", "bogus://x")
    assert code == 1
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    code, out = run(home, "init", "--quiet")
    assert code == 0, out


@pytest.mark.parametrize(
    "command", [("audit", "report", "break-glass"), ("role", "list"), ("user", "list")]
)
def test_a_closed_output_pipe_ends_the_command_quietly(home: Path, command: tuple[str]) -> None:
    """``hearth audit report ... | head``: when the reader of the output has gone, the command
    stops as a Unix tool does (the exit status SIGPIPE gives, 141) and says nothing. It used to
    end with "error: internal error (BrokenPipeError, incident ...)"."""
    process = subprocess.Popen(
        [*HEARTH, "--home", str(home), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the command writes anything
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.decode()) == (PIPE_CLOSED_EXIT, "")


def test_handle_errors_ends_quietly_on_a_closed_pipe() -> None:
    @click.command()
    @handle_errors
    def prints() -> None:
        raise BrokenPipeError

    result = CliRunner().invoke(prints)
    assert (result.exit_code, result.output) == (141, "")


def test_role_set_names_a_missing_file_plainly(home: Path) -> None:
    code, out = run(home, "role", "set", "scribe", "/nonexistent/role.json")
    assert code == 2
    assert "does not exist" in out
    assert "internal error" not in out


def test_init_records_the_port_the_server_will_use(tmp_path: Path) -> None:
    code, out = run(tmp_path / "h", "init", "--json", "--port", "8188")
    assert code == 0, out
    assert json.loads(out)["base_url"] == "http://127.0.0.1:8188/fhir"
    assert "port = 8188" in (tmp_path / "h" / "hearth.toml").read_text()


def test_serve_says_when_the_certificate_and_key_are_swapped(home: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    code, out = run(home, "serve", "--port", "1", "--tls-cert", str(key), "--tls-key", str(cert))
    assert code == 1
    assert "do not load together" in out
    assert "internal error" not in out


def test_integrity_scan_finds_new_damage_once_and_names_it(home: Path) -> None:
    run(home, "demo", "load", "--patients", "2")
    code, out = run(home, "integrity", "scan", "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["ok"]
    assert first["versions"] > 0
    assert first["new"] == []
    code, out = run(home, "integrity", "scan", "--json")
    assert json.loads(out)["versions"] == 0  # nothing new since the last scan
    engine = create_engine(f"sqlite:///{home / 'data' / 'hearth.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE resource_version SET mac = :m WHERE seq = 4"), {"m": b"x" * 32})
    engine.dispose()
    code, out = run(home, "integrity", "scan", "--full", "--json")
    assert code == 1
    report = json.loads(out)
    assert [(f["kind"], f["seq"]) for f in report["new"]] == [("version", 4)]
    assert "MAC does not match" in report["new"][0]["problem"]
    code, out = run(home, "integrity", "scan", "--full")
    assert code == 1
    assert "version seq 4" in out
    assert "0 new findings; 1 OPEN FINDING" in out


def test_serve_refuses_a_private_key_others_can_read(home: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    key.chmod(0o644)
    code, out = run(home, "serve", "--port", "1", "--tls-cert", str(cert), "--tls-key", str(key))
    assert code == 2
    assert "chmod 600" in out
    assert "BEGIN" not in out
