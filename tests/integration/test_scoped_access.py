"""Scopes enforced at the gate: a SMART principal reads only what its scopes allow."""

from __future__ import annotations

import pytest

from hearth.domain import HearthError, Principal, PrincipalKind, SmartScope, errors
from tests.support import Instance, admin


def smart(*texts: str, patient: str | None = None) -> Principal:
    return Principal(
        subject="admin",
        kind=PrincipalKind.USER,
        roles=frozenset({"bootstrap-admin"}),
        scopes=frozenset(SmartScope.parse(t) for t in texts),
        patient=patient,
        client_id="app",
    )


def test_patient_scope_at_the_gate(sqlite_instance: Instance) -> None:
    records = sqlite_instance.container.records(admin())
    mine = records.create("Patient", {"resourceType": "Patient", "active": True})
    theirs = records.create("Patient", {"resourceType": "Patient", "active": False})
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
    }
    my_obs = records.create(
        "Observation", {**obs, "subject": {"reference": f"Patient/{mine.res_id}"}}
    )
    their_obs = records.create(
        "Observation", {**obs, "subject": {"reference": f"Patient/{theirs.res_id}"}}
    )

    app = sqlite_instance.container.records(smart("patient/*.rs", patient=mine.res_id))
    assert app.read("Patient", mine.res_id).res_id == mine.res_id
    assert app.read("Observation", my_obs.res_id).res_id == my_obs.res_id
    for res_type, res_id in (("Patient", theirs.res_id), ("Observation", their_obs.res_id)):
        with pytest.raises(HearthError) as hidden:
            app.read(res_type, res_id)
        assert hidden.value.code is errors.NOT_FOUND  # out of scope looks like absent
    with pytest.raises(HearthError) as write:
        app.create("Observation", {**obs, "subject": {"reference": f"Patient/{mine.res_id}"}})
    assert write.value.code is errors.FORBIDDEN  # .rs grants no create


def test_user_scope_limits_types(sqlite_instance: Instance) -> None:
    records = sqlite_instance.container.records(admin())
    patient = records.create("Patient", {"resourceType": "Patient"})
    app = sqlite_instance.container.records(smart("user/Observation.rs"))
    with pytest.raises(HearthError) as refused:
        app.read("Patient", patient.res_id)
    assert refused.value.code is errors.FORBIDDEN
