"""The administrators' alarm API: bearer-authenticated, administrators only, audited actions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from hearth.web.app import create_app
from tests.alarm_support import alarm
from tests.support import Instance


@pytest.fixture
def api(inst: Instance) -> Iterator[TestClient]:
    app = create_app(inst.container)
    headers = {"Authorization": f"Bearer {inst.admin_token}"}
    with TestClient(app, base_url="http://127.0.0.1", headers=headers) as client:
        yield client


def raised(inst: Instance) -> str:
    inst.container.alarms.raise_alarm(alarm("Patient/p1", seq="4"))
    inst.container.alarm_service.process()
    [stored] = inst.container.alarm_service.list_alarms()
    return stored.alarm_id


def test_list_show_acknowledge_resolve(inst: Instance, api: TestClient) -> None:
    alarm_id = raised(inst)
    listed = api.get("/api/alarms", params={"state": "open"})
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    [item] = listed.json()["alarms"]
    assert (item["id"], item["kind"], item["count"]) == (alarm_id, "integrity.mismatch", 1)
    shown = api.get(f"/api/alarms/{alarm_id}").json()
    assert shown["details"] == {"seq": "4"}
    assert shown["deliveries"][0]["sink"] == "log"
    acked = api.post(f"/api/alarms/{alarm_id}/acknowledge", json={"note": "looking"})
    assert acked.status_code == 200
    assert acked.json()["acknowledged"]["note"] == "looking"
    admin_subject = acked.json()["acknowledged"]["by"]
    assert admin_subject
    again = api.post(f"/api/alarms/{alarm_id}/acknowledge")
    assert again.status_code == 409
    assert again.json()["resourceType"] == "OperationOutcome"
    assert "HRT-1002" in again.text
    done = api.post(f"/api/alarms/{alarm_id}/resolve", json={"note": "fixed"}).json()
    assert (done["state"], done["resolved"]["by"]) == ("resolved", admin_subject)
    assert api.get("/api/alarms", params={"state": "open"}).json()["alarms"] == []


def test_unknown_alarm_and_bad_parameters(inst: Instance, api: TestClient) -> None:
    assert api.get("/api/alarms/" + "0" * 32).status_code == 404
    assert api.get("/api/alarms/not-an-id").status_code == 404
    assert api.get("/api/alarms", params={"state": "sleeping"}).status_code == 400
    bad = api.post("/api/alarms/" + "0" * 32 + "/resolve", content=b"{nope")
    assert bad.status_code == 400


def test_only_administrators(inst: Instance, api: TestClient) -> None:
    alarm_id = raised(inst)
    inst.container.users.add("clerk", roles=frozenset(), by="test")
    token = inst.container.users.issue_api_token("clerk", ttl=timedelta(days=7), by="test")
    clerk = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/alarms", headers=clerk).status_code == 403
    assert api.post(f"/api/alarms/{alarm_id}/resolve", headers=clerk).status_code == 403
    anonymous = {"Authorization": ""}
    assert api.get("/api/alarms", headers=anonymous).status_code == 401
    assert inst.container.alarm_service.get(alarm_id).state.value == "open"
