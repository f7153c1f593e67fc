"""Snooping detection (issue 5 item 7): distinct patients per user per hour and day, alarms,
an optional pause, and same-surname and self lookups compared by keyed hashes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.domain import AlarmKind, HearthError, errors
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.wiring import Container, init_instance
from tests.access_world import LINKED, World, build_world
from tests.integration.auth.conftest import CapturedAlarms
from tests.support import FixedClock, admin, cli


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Container, World, CapturedAlarms, FixedClock]]:
    home = tmp_path / "home"
    clock = FixedClock()
    init_instance(home, clock=clock)
    with (home / "hearth.toml").open("a", encoding="utf-8") as config:
        config.write("\n[access]\nsnooping_hour = 3\nsnooping_day = 5\nsnooping_throttle = true\n")
    alarms = CapturedAlarms()
    container = Container(load_settings(home), clock=clock, alarms=alarms)
    try:
        yield container, build_world(container), alarms, clock
    finally:
        container.close()


def snooping(alarms: CapturedAlarms) -> list[dict[str, str]]:
    return [a.details for a in alarms.raised if a.kind is AlarmKind.ACCESS_SNOOPING]


def test_volume_alarms_and_the_pause(
    watched: tuple[Container, World, CapturedAlarms, FixedClock],
) -> None:
    container, world, alarms, clock = watched
    doc = container.repository(world.principal("physician"))
    for name in LINKED[:3]:
        doc.read("Patient", world.ids[name])
        doc.read("Patient", world.ids[name])  # the same patient again does not count twice
    assert snooping(alarms) == []
    doc.read("Patient", world.ids[LINKED[3]])
    (volume,) = snooping(alarms)
    assert volume["window"] == "hour"
    assert volume["patients"] == "4"
    assert volume["paused"] == "yes"
    assert volume["user"] == world.users["physician"]
    with pytest.raises(HearthError) as paused:
        container.repository(world.principal("physician")).read("Patient", world.ids[LINKED[0]])
    assert paused.value.code is errors.ACCESS_THROTTLED
    # Other users are not affected; a privacy officer lifts the pause.
    container.repository(world.principal("nurse")).read("Patient", world.ids["careteam"])
    container.monitor.lift(container.system_principal("cli"), world.users["physician"])
    container.repository(world.principal("physician")).read("Patient", world.ids[LINKED[0]])
    # The day's threshold counts across hours.
    clock.advance(hours=2)
    again = container.repository(world.principal("physician"))
    for name in LINKED[4:6]:
        again.read("Patient", world.ids[name])
    assert [a["window"] for a in snooping(alarms)] == ["hour", "day"]
    container.monitor.lift(container.system_principal("cli"), world.users["physician"])
    # A search that lists many patients counts them all.
    clock.advance(days=2)
    from hearth.fhir.search import Context, parse_search

    request = parse_search("Patient", [], ctx=Context(now_us=0), default_count=50, max_count=50)
    container.repository(world.principal("physician")).search(request)
    assert snooping(alarms)[-1]["patients"] == str(len(LINKED))


def test_same_surname_and_self_lookups(
    watched: tuple[Container, World, CapturedAlarms, FixedClock],
) -> None:
    container, world, alarms, _clock = watched
    root = container.repository(admin())
    # Dr Osler's namesake, on Dr Osler's care team.
    namesake = root.create(
        {"resourceType": "Patient", "name": [{"family": "ÖSLER", "given": ["Kin"]}]}
    ).res_id
    root.create(
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{namesake}"},
            "participant": [{"member": {"reference": f"Practitioner/{world.ids['doc']}"}}],
        }
    )
    doc = container.repository(world.principal("physician"))
    doc.read("Patient", namesake)
    flagged = snooping(alarms)
    assert flagged == [
        {"user": world.users["physician"], "patient": f"Patient/{namesake}", "kind": "same-surname"}
    ]
    doc.read("Patient", world.ids["gp"])  # another family name: nothing
    assert len(snooping(alarms)) == 1
    # A nurse who is also a patient here opens her own record.
    cli = container.system_principal("cli")
    container.access.link_user(
        cli, "u-nurse", practitioner=world.ids["nurse_p"], patient=world.ids["careteam"]
    )
    container.repository(world.principal("nurse")).read("Patient", world.ids["careteam"])
    assert snooping(alarms)[-1]["kind"] == "self"
    # The patient user opening their own record is what the role is for.
    container.repository(world.principal("patient")).read("Patient", world.ids["careteam"])
    assert snooping(alarms)[-1]["kind"] == "self"
    assert len(snooping(alarms)) == 2


def test_the_command_line_lifts_a_pause_without_redis(
    watched: tuple[Container, World, CapturedAlarms, FixedClock],
) -> None:
    """The counters live in the serving process (no ``[redis] url``), yet ``hearth access
    resume``, another process with counters of its own, lets the user through at once: the
    resume is recorded in the database, audited, and read by the process that paused them."""
    container, world, _alarms, clock = watched
    assert container.settings.redis_url is None
    user = world.users["physician"]
    token = container.authenticator.issue_token(
        subject=user, roles=frozenset({"physician"}), label="t", ttl=timedelta(days=1), by="test"
    )
    api = TestClient(create_app(container), base_url="http://127.0.0.1")
    bearer = {"Authorization": f"Bearer {token}"}
    for name in LINKED[:4]:
        assert api.get(f"/fhir/Patient/{world.ids[name]}", headers=bearer).status_code == 200
    paused = api.get(f"/fhir/Patient/{world.ids[LINKED[0]]}", headers=bearer)
    assert paused.status_code == 429
    assert paused.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-1109"
    clock.advance(minutes=1)
    assert api.get(f"/fhir/Patient/{world.ids[LINKED[0]]}", headers=bearer).status_code == 429

    home = container.settings.home
    code, output = cli(home, "access", "resume", "u-physician")
    assert code == 0, output
    assert "Access of u-physician resumed." in output
    # At once, in the serving process: no restart, no wait for the window to end.
    assert api.get(f"/fhir/Patient/{world.ids[LINKED[0]]}", headers=bearer).status_code == 200
    # Audited under the operator, in the chain like every other access-control change.
    with container.db.read.connect() as conn:
        bodies = [
            orjson.loads(bytes(b))
            for b in conn.execute(
                text("SELECT body FROM audit_entry WHERE action = 'access.resume'")
            ).scalars()
        ]
    assert [(b["actor"], b["type"], b["id"], b["outcome"]) for b in bodies] == [
        ("system:cli", "User", user, "success")
    ]
    # A later pause is not lifted by the earlier resume (the command line ran on the wall
    # clock: the test's clock moves past it first).
    clock.current = datetime.now(UTC) + timedelta(days=2)
    for name in LINKED[4:8]:
        api.get(f"/fhir/Patient/{world.ids[name]}", headers=bearer)
    assert api.get(f"/fhir/Patient/{world.ids[LINKED[4]]}", headers=bearer).status_code == 429
