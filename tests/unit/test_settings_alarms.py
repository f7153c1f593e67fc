"""``[alarms]`` and ``[integrity]`` in hearth.toml: what is accepted and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.domain import HearthError, Severity, errors
from hearth.settings import load_settings

BASE = 'instance_id = "i1"\n[keys]\nsource = "file"\n'


def settings_with(tmp_path: Path, extra: str, env: dict[str, str] | None = None) -> object:
    (tmp_path / "hearth.toml").write_text(BASE + extra, "utf-8")
    return load_settings(tmp_path, env or {})


def test_defaults(tmp_path: Path) -> None:
    s = settings_with(tmp_path, "")
    alarms = s.alarms  # type: ignore[attr-defined]
    assert alarms.log.enabled
    assert alarms.log.min_severity is Severity.INFO
    assert alarms.renotify_minutes == 60
    assert alarms.backup_rpo_hours == 24
    assert (alarms.webhooks, alarms.emails, alarms.syslogs) == ((), (), ())
    integrity = s.integrity  # type: ignore[attr-defined]
    assert integrity.scan
    assert integrity.full_pass_days == 7
    assert integrity.busy_share == 0.25


def test_every_sink_parses(tmp_path: Path) -> None:
    (tmp_path / "smtp.pw").write_text("mail-password\n")
    s = settings_with(
        tmp_path,
        """
[alarms]
renotify_minutes = 30
backup_rpo_hours = 6
[alarms.log]
path = "logs/alarms.jsonl"
min_severity = "warning"
[[alarms.webhook]]
name = "oncall"
url = "https://hooks.example.org/hearth"
secret_env = "HOOK_SECRET"
[[alarms.webhook]]
url = "http://127.0.0.1:9000/x"
secret_env = "HOOK_SECRET"
min_severity = "critical"
[alarms.email]
host = "smtp.example.org"
from = "hearth@example.org"
to = ["oncall@example.org", "privacy@example.org"]
username = "hearth"
password_file = "smtp.pw"
[[alarms.syslog]]
transport = "tcp"
host = "10.0.0.5"
port = 6514
facility = "authpriv"
""",
        {"HOOK_SECRET": "hook-secret-value"},
    )
    a = s.alarms  # type: ignore[attr-defined]
    assert a.renotify_minutes == 30
    assert a.backup_rpo_hours == 6
    assert a.log.path == tmp_path / "logs/alarms.jsonl"
    assert [w.name for w in a.webhooks] == ["oncall", "webhook-2"]
    assert a.webhooks[0].secret.reveal() == "hook-secret-value"
    assert "hook-secret" not in repr(a)
    assert a.webhooks[1].min_severity is Severity.CRITICAL
    [email] = a.emails
    assert (email.port, email.security) == (587, "starttls")
    assert email.recipients == ("oncall@example.org", "privacy@example.org")
    assert email.password is not None
    assert email.password.reveal() == "mail-password"
    assert "mail-password" not in repr(a)
    [syslog] = a.syslogs
    assert (syslog.transport, syslog.facility, syslog.port) == ("tcp", 10, 6514)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[alarms.webhook]]\nurl = "https://h.example/x"\nsecret = "inline"\n',
            "do not write secret",
        ),
        ('[[alarms.webhook]]\nurl = "https://h.example/x"\n', "always signed"),
        (
            '[[alarms.webhook]]\nurl = "http://h.example/x"\nsecret_env = "S"\n',
            "https outside loopback",
        ),
        ('[[alarms.webhook]]\nurl = "ftp://h/x"\nsecret_env = "S"\n', "https:// URL"),
        (
            '[[alarms.webhook]]\nurl = "https://h.example/x"\nsecret_env = "UNSET"\n',
            "UNSET is not set",
        ),
        ('[alarms.email]\nhost = "smtp.example.org"\n', "host, from and to"),
        (
            '[alarms.email]\nhost = "smtp.example.org"\nfrom = "a@b"\nto = "c@d"\n'
            'security = "none"\n',
            "only allowed to a relay on loopback",
        ),
        (
            '[alarms.email]\nhost = "h"\nfrom = "a@b"\nto = "c@d"\nusername = "u"\n',
            "go together",
        ),
        ('[alarms.syslog]\ntransport = "carrier-pigeon"\n', "udp, tcp or unix"),
        ('[alarms.syslog]\nfacility = "kern"\n', "facility is one of"),
        ('[alarms.log]\nmin_severity = "loud"\n', "min_severity"),
        (
            '[[alarms.syslog]]\nname = "a"\n[[alarms.syslog]]\nname = "a"\n',
            "distinct name",
        ),
    ],
)
def test_mistakes_are_refused_with_a_clear_message(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(HearthError) as refused:
        settings_with(tmp_path, extra, {"S": "x"})
    assert refused.value.code is errors.ALARM_SINK_CONFIG
    assert message in refused.value.detail


def test_bad_scanner_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HearthError, match="full_pass_days"):
        settings_with(tmp_path, "[integrity]\nfull_pass_days = 0\n")
    for share in ("0", "1.5"):
        with pytest.raises(HearthError, match="busy_share"):
            settings_with(tmp_path, f"[integrity]\nbusy_share = {share}\n")
    ok = settings_with(tmp_path, "[integrity]\nbusy_share = 1\n")
    assert ok.integrity.busy_share == 1  # type: ignore[attr-defined]
