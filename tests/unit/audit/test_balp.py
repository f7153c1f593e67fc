"""AuditEvent rendering (IHE BALP 1.1.4, FHIR-AE-01..06)."""

from __future__ import annotations

from typing import Any

from hearth.audit.balp import CHAIN_EXTENSION, USER_SYSTEM, audit_event

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."


def entry(**fields: Any) -> dict[str, Any]:
    base = {
        "v": 1,
        "seq": 7,
        "ts": "2026-01-15T09:30:00.000000Z",
        "actor": "usr_x",
        "actor_kind": "user",
        "outcome": "success",
        "purpose": "TREAT",
        "source": "10.0.0.1",
    }
    return {**base, **fields}


def render(**fields: Any) -> dict[str, Any]:
    return audit_event(entry(**fields), chain_hash=b"\x01" * 32, site="inst")


def test_a_patient_read_is_balp_patient_read() -> None:
    event = render(
        action="read", type="Observation", id="o1", version=2, patient="p1", request="r9"
    )
    assert event["meta"]["profile"] == [BALP + "PatientRead"]
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0]["code"] == "read"
    assert event["action"] == "R"
    assert event["outcome"] == "0"
    assert event["extension"][0]["url"] == CHAIN_EXTENSION
    assert event["extension"][0]["extension"][1]["valueString"] == "01" * 32
    user, server = event["agent"]
    assert user["who"]["identifier"] == {"system": USER_SYSTEM, "value": "usr_x"}
    assert user["network"] == {"address": "10.0.0.1", "type": "2"}
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    assert server["requestor"] is False
    whats = [e.get("what") for e in event["entity"]]
    assert {"reference": "Observation/o1/_history/2"} in whats
    assert {"reference": "Patient/p1"} in whats
    assert {"identifier": {"value": "r9"}} in whats


def test_queries_operations_and_history() -> None:
    search = audit_event(
        entry(action="search", type="Observation", patients=["a", "b"]),
        chain_hash=b"\0" * 32,
        site="s",
        detail={"query": "code=1", "disclosed": ["Observation/1", 5]},
        patients_shown=["a"],
    )
    assert search["meta"]["profile"] == [BALP + "PatientQuery"]
    assert search["action"] == "E"
    roles = [e["role"]["code"] for e in search["entity"]]
    assert roles.count("1") == 1  # only the patient shown
    assert "24" in roles
    everything = render(action="search", type="Patient", id="p", patient="p")
    assert everything["subtype"][0]["code"] == "operation"
    assert "entity" in everything
    history = render(action="history", type="Patient", id="p", patient="p")
    assert history["subtype"][0]["code"] == "history-instance"
    assert history["meta"]["profile"] == [BALP + "PatientRead"]
    bare = render(action="create", type="Organization", id="o", outcome="denied", code="HRT-0402")
    assert bare["meta"]["profile"] == [BALP + "Create"]
    assert bare["outcome"] == "4"
    assert bare["outcomeDesc"] == "HRT-0402"


def test_hearths_own_events_use_dicom_types() -> None:
    for action, code in (
        ("auth.sign-in", "110114"),
        ("audit.search", "110101"),
        ("break-glass.declare", "110113"),
        ("access.role-set", "110136"),
        ("user.roles", "110137"),
        ("integrity.scan", "110100"),
    ):
        event = render(action=action)
        assert event["type"]["code"] == code, action
        assert event["action"] == "E"
        assert event["subtype"][0]["code"] == action
    user = render(
        action="user.roles", type="User", id="usr_y", actor_kind="system", outcome="error"
    )
    assert user["entity"][0]["what"]["identifier"]["value"] == "usr_y"
    assert user["agent"][0]["type"]["coding"][0]["code"] == "110150"
    assert user["outcome"] == "8"
    quiet = audit_event(
        {k: v for k, v in entry(action="auth.sign-in").items() if k not in ("purpose", "source")},
        chain_hash=b"",
        site="s",
    )
    assert "purposeOfEvent" not in quiet
    assert "entity" not in quiet
