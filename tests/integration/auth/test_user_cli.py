"""``hearth user`` and the administrator's first sign-in (issue 4 item 1)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hearth.cli import main
from hearth.domain import HearthError
from hearth.settings import load_settings
from hearth.wiring import Container, issue_admin_credential


def hearth(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def test_user_add_list_roles_disable_enable_reset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert hearth(home, "init", "--quiet").exit_code == 0
    added = hearth(home, "user", "add", "Alice", "--role", "bootstrap-admin", "--name", "Alice S")
    assert added.exit_code == 0, added.output
    link = re.search(r"http://localhost:8080/enrol\?token=(hrt_\S+)", added.output)
    assert link, added.output
    duplicate = hearth(home, "user", "add", "alice", "--role", "bootstrap-admin")
    assert duplicate.exit_code == 1
    assert "HRT-0711" in duplicate.output
    unknown_role = hearth(home, "user", "add", "bob", "--role", "superuser")
    assert unknown_role.exit_code == 1
    assert "HRT-0713" in unknown_role.output
    bad_name = hearth(home, "user", "add", "-x", "--role", "bootstrap-admin")
    assert bad_name.exit_code != 0
    listed = json.loads(hearth(home, "user", "list", "--json").output)
    names = {u["username"]: u for u in listed}
    assert set(names) == {"admin", "alice"}
    assert names["alice"]["user_id"].startswith("usr_")
    assert names["alice"]["user_id"] != names["admin"]["user_id"]
    assert names["alice"]["password"] is False
    assert names["alice"]["keys"] == 0
    assert "hash" not in json.dumps(listed)
    disabled = hearth(home, "user", "disable", "alice")
    assert "ended 0 sessions, revoked 0 API tokens" in disabled.output
    assert json.loads(hearth(home, "user", "list", "--json").output)[1]["status"] == "disabled"
    assert hearth(home, "user", "enable", "alice").exit_code == 0
    reset = hearth(home, "user", "reset-mfa", "alice")
    assert "enrol?token=hrt_" in reset.output
    assert "ended 0 sessions, revoked 0 API tokens and app grants" in reset.output
    assert hearth(home, "user", "unlock", "alice").exit_code == 0
    assert hearth(home, "user", "roles", "alice", "--role", "bootstrap-admin").exit_code == 0
    assert "enrol?token=" in hearth(home, "user", "link", "admin").output
    missing = hearth(home, "user", "disable", "nobody")
    assert missing.exit_code == 1
    assert "HRT-0712" in missing.output


def test_admin_credential_gives_a_set_up_link_until_the_admin_can_sign_in(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert hearth(home, "init", "--quiet").exit_code == 0
    container = Container(load_settings(home))
    try:
        first = issue_admin_credential(container, ttl=timedelta(hours=1))
        assert first.token.startswith("hrt_")
        assert first.set_up is not None
        assert first.set_up.username == "admin"
        # The API token acts as the administrator account (its user id), not as "admin".
        principal = container.authenticator.authenticate_bearer(first.token, source=None)
        assert principal.subject == container.users.get("admin").user_id
        # A second credential replaces the first link: only the newest one works.
        second = issue_admin_credential(container, ttl=timedelta(hours=1))
        assert second.set_up is not None
        with pytest.raises(HearthError) as refused:
            container.account.enrolment(first.set_up.token)
        assert refused.value.code.code == "HRT-0708"
        assert container.account.enrolment(second.set_up.token).username == "admin"
    finally:
        container.close()


def test_api_tokens_act_as_a_user_and_die_with_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert hearth(home, "init", "--quiet").exit_code == 0
    hearth(home, "user", "add", "alice", "--role", "bootstrap-admin")
    token = hearth(home, "token", "issue", "--user", "alice", "--hours", "1").output.strip()
    container = Container(load_settings(home))
    try:
        principal = container.authenticator.authenticate_bearer(token, source=None)
        assert principal.subject == container.users.get("alice").user_id
        assert principal.roles == frozenset({"bootstrap-admin"})
    finally:
        container.close()
    assert "Revoked 1 API token or app grant." in hearth(home, "token", "revoke", "alice").output
    too_long = hearth(home, "token", "issue", "--user", "alice", "--hours", "169")
    assert too_long.exit_code == 2  # a week at most
    missing = hearth(home, "token", "issue", "--user", "nobody")
    assert missing.exit_code == 1
    assert "HRT-0712" in missing.output
    hearth(home, "user", "disable", "alice")
    refused = hearth(home, "token", "issue", "--user", "alice")
    assert refused.exit_code == 1
