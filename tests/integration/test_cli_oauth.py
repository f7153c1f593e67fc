"""``hearth client`` and ``hearth cert`` as an operator uses them, failures included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.oauth_support import ClientKey, Pki
from tests.support import cli

run = cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = run(home, "init", "--json")
    assert code == 0, out
    return home


def test_client_add_list_revoke(home: Path, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(ClientKey.generate("ES384").jwks()))
    code, out = run(
        home,
        "client",
        "add",
        "--kind",
        "backend",
        "--name",
        "Nightly export",
        "--scope",
        "system/Patient.rs system/Observation.rs",
        "--jwks",
        str(jwks),
        "--json",
    )
    assert code == 0, out
    added = json.loads(out)
    assert added["auth_method"] == "private_key_jwt"
    client_id = added["client_id"]

    code, out = run(home, "client", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["client_id"] == client_id
    assert listed["state"] == "active"
    assert listed["kind"] == "backend"

    code, out = run(home, "client", "revoke", client_id)
    assert code == 0
    assert "revoked" in out
    assert json.loads(run(home, "client", "list", "--json")[1])[0]["state"] == "revoked"
    code, out = run(home, "client", "revoke", "nosuchclient")
    assert code == 1
    assert "No such client" in out


def test_client_secret_is_shown_once(home: Path) -> None:
    code, out = run(
        home,
        "client",
        "add",
        "--kind",
        "backend",
        "--name",
        "Job",
        "--scope",
        "system/*.rs",
        "--secret",
    )
    assert code == 0, out
    assert "client_secret (shown once): hrs_" in out
    listed = run(home, "client", "list", "--json")[1]
    assert "hrs_" not in listed


def test_client_add_refusals(home: Path, tmp_path: Path) -> None:
    code, out = run(
        home, "client", "add", "--name", "App", "--scope", "patient/*.rs"
    )  # a SMART app without a redirect URI
    assert code == 1
    assert "redirect URI" in out
    code, out = run(
        home,
        "client",
        "add",
        "--name",
        "App",
        "--scope",
        "patient/*.rs",
        "--redirect-uri",
        "http://app.example/cb",
    )
    assert code == 1
    assert "https" in out
    code, out = run(
        home,
        "client",
        "add",
        "--kind",
        "backend",
        "--name",
        "Job",
        "--scope",
        "user/*.rs",
        "--secret",
    )
    assert code == 1
    assert "system/" in out
    jwks = tmp_path / "jwks.json"
    jwks.write_text("{}")
    code, out = run(
        home,
        "client",
        "add",
        "--kind",
        "backend",
        "--name",
        "Job",
        "--scope",
        "system/*.rs",
        "--jwks",
        str(jwks),
        "--secret",
    )
    assert code == 1
    assert "choose one" in out


def test_cert_add_list_revoke(home: Path, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    cert, _, _ = pki.issue("alice piv")
    code, out = run(home, "cert", "add", str(cert), "--user", "alice")
    assert code == 1
    assert "HRT-0712" in out  # no such user: nothing is mapped
    for name in ("alice", "bob"):
        assert run(home, "user", "add", name, "--role", "bootstrap-admin")[0] == 0
    users = {
        u["username"]: u["user_id"] for u in json.loads(run(home, "user", "list", "--json")[1])
    }
    code, out = run(home, "cert", "add", str(cert), "--user", "alice", "--label", "PIV")
    assert code == 0, out
    assert f"user alice ({users['alice']})" in out
    thumbprint = out.split()[2]
    (row,) = json.loads(run(home, "cert", "list", "--json")[1])
    assert (row["thumbprint"], row["kind"], row["subject"], row["state"]) == (
        thumbprint,
        "user",
        users["alice"],  # the immutable user id, which certificate sign-in looks up
        "active",
    )
    assert run(home, "cert", "add", str(cert), "--user", users["bob"])[0] == 1  # mapped once only
    assert run(home, "cert", "revoke", thumbprint)[0] == 0
    assert json.loads(run(home, "cert", "list", "--json")[1])[0]["state"] == "revoked"
    assert run(home, "cert", "revoke", thumbprint)[0] == 1
    code, out = run(home, "cert", "add", str(cert))
    assert code == 1
    assert "exactly one of --user and --client" in out


@pytest.mark.parametrize(
    "thumbprint", ["-hb0rE6kNQpU1mV0e9pB1Yc4u8m3Xh2Zs5aTq7wLdJf", "--0rE6kNQpU1mV0e9"]
)
def test_cert_revoke_takes_a_thumbprint_that_begins_with_a_dash(
    home: Path, thumbprint: str
) -> None:
    # base64url: one thumbprint in 64 begins with "-"; it is the argument, not an option or -h
    code, out = run(home, "cert", "revoke", thumbprint)
    assert code == 1, out
    assert "HRT-" in out
    assert "Usage" not in out


def test_client_with_a_tls_certificate(home: Path, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    cert, _, _ = pki.issue("service")
    code, out = run(
        home,
        "client",
        "add",
        "--kind",
        "backend",
        "--name",
        "mTLS job",
        "--scope",
        "system/*.rs",
        "--tls-cert",
        str(cert),
        "--json",
    )
    assert code == 0, out
    client_id = json.loads(out)["client_id"]
    (row,) = json.loads(run(home, "cert", "list", "--json")[1])
    assert (row["kind"], row["subject"]) == ("client", client_id)
