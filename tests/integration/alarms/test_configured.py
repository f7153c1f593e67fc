"""Sinks configured in hearth.toml, through the real wiring and the command line."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from hearth.crypto.webhook import verify_webhook
from hearth.settings import load_settings
from hearth.wiring import Container
from tests.alarm_support import SyslogReceiver, WebhookReceiver, alarm, read_jsonl
from tests.servers.smtp import SmtpServer
from tests.support import cli

SECRET = "configured-webhook-secret"


run = cli


def configure(home: Path, receiver: WebhookReceiver, smtp: SmtpServer, syslog_port: int) -> None:
    with (home / "hearth.toml").open("a", encoding="utf-8") as f:
        f.write(
            f"""
[alarms]
renotify_minutes = 60

[alarms.log]
path = "logs/alarms.jsonl"

[[alarms.webhook]]
name = "oncall"
url = "{receiver.url}"
secret_env = "HEARTH_TEST_WEBHOOK_SECRET"

[alarms.email]
name = "mail"
host = "127.0.0.1"
port = {smtp.port}
security = "none"
from = "hearth@clinic.example"
to = "oncall@clinic.example"

[alarms.syslog]
transport = "udp"
port = {syslog_port}
"""
        )


def test_the_container_delivers_to_every_configured_sink(
    tmp_path: Path, receiver: WebhookReceiver, smtp_server: SmtpServer
) -> None:
    home = tmp_path / "home"
    code, out = run(home, "init", "--json")
    assert code == 0, out
    collector = SyslogReceiver("udp")
    try:
        configure(home, receiver, smtp_server, collector.port)
        container = Container(load_settings(home, {"HEARTH_TEST_WEBHOOK_SECRET": SECRET}))
        try:
            container.alarms.raise_alarm(alarm("Patient/p1"))
            receiver.wait_for(1)
            smtp_server.wait_for(1)
            collector.wait_for(1)
        finally:
            container.close()
    finally:
        collector.stop()
    [request] = receiver.requests
    verify_webhook(
        SECRET.encode(),
        signature=request.headers["X-Hearth-Signature"],
        timestamp=request.headers["X-Hearth-Timestamp"],
        body=request.body,
        now=int(time.time()),
    )
    [line] = read_jsonl(home / "logs" / "alarms.jsonl")
    assert line["alarm"]["subject"] == "Patient/p1"  # type: ignore[index]


def test_corrupted_row_to_alarm_to_ack_and_resolve_on_the_command_line(
    tmp_path: Path, receiver: WebhookReceiver, smtp_server: SmtpServer
) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--json")[0] == 0
    assert run(home, "demo", "load", "--patients", "3")[0] == 0
    configure(home, receiver, smtp_server, 9)  # the discard port: UDP needs no listener
    env = {"HEARTH_TEST_WEBHOOK_SECRET": SECRET}
    with sqlite3.connect(home / "data" / "hearth.db") as db:
        db.execute("UPDATE resource_version SET mac = zeroblob(32) WHERE seq = 2")
    code, out = run(home, "integrity", "verify", env=env)
    assert code == 1
    assert "seq 2" in out
    # The command delivered before it exited: no server needs to be running.
    [request] = receiver.wait_for(1)
    [mail] = smtp_server.wait_for(1)
    alarm_id = request.headers["X-Hearth-Alarm"]
    assert mail.message["X-Hearth-Alarm"] == alarm_id

    code, out = run(home, "alarm", "list", "--json", env=env)
    [listed] = json.loads(out)
    assert listed["id"] == alarm_id
    assert (listed["kind"], listed["state"]) == ("integrity.mismatch", "open")

    # Like a git commit, an alarm is named by a unique prefix of its id (six characters or more).
    short = alarm_id[:8]
    assert run(home, "alarm", "ack", short, "--by", "alice", "--note", "on it", env=env)[0] == 0
    assert run(home, "alarm", "show", alarm_id[:5], env=env)[0] == 1
    code, out = run(home, "alarm", "ack", alarm_id, env=env)
    assert code == 1
    assert "HRT-1002" in out
    code, out = run(home, "alarm", "resolve", alarm_id, "--by", "bob", "--note", "fixed", env=env)
    assert code == 0
    code, out = run(home, "alarm", "show", alarm_id, "--json", env=env)
    shown = json.loads(out)
    assert shown["state"] == "resolved"
    assert shown["acknowledged"]["by"] == "operator:alice"
    assert shown["acknowledged"]["note"] == "on it"
    assert shown["resolved"]["by"] == "operator:bob"
    assert {d["sink"]: d["state"] for d in shown["deliveries"]} == {
        "log": "delivered",
        "oncall": "delivered",
        "mail": "delivered",
        "syslog-1": "delivered",
    }
    assert run(home, "alarm", "list", env=env)[1].strip() == "No alarms."
    code, out = run(home, "alarm", "list", "--all", "--json", env=env)
    assert len(json.loads(out)) == 1
    code, out = run(home, "alarm", "show", "nope", env=env)
    assert code == 1
    assert "HRT-1001" in out
    code, out = run(home, "audit", "verify", env=env)
    assert code == 0, out
