"""Scopes limit a principal's own rights (SMART-SC-05, SC-07, SC-04; BS-09)."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.domain import Action, Principal, PrincipalKind, SmartScope
from hearth.security import (
    ALL_TYPES,
    Denial,
    Grant,
    RolePolicy,
    ScopedPolicy,
    bootstrap_roles,
    interaction_for,
    matches_query,
    scope_decision,
)

LAB = "http://terminology.hl7.org/CodeSystem/observation-category"


def scopes(*texts: str) -> frozenset[SmartScope]:
    return frozenset(SmartScope.parse(t) for t in texts)


def principal(*texts: str, patient: str | None = None, roles: str = "bootstrap-admin") -> Principal:
    return Principal(
        subject="u1",
        kind=PrincipalKind.USER,
        roles=frozenset({roles}),
        scopes=scopes(*texts),
        patient=patient,
        client_id="app",
    )


def observation(patient: str, category: str = "laboratory") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"system": LAB, "code": category}]}],
        "code": {"text": "x"},
    }


POLICY = ScopedPolicy(RolePolicy(bootstrap_roles()))


def test_interaction_letters() -> None:
    assert interaction_for(Action.CREATE, instance=False) == "c"
    assert interaction_for(Action.READ, instance=True) == "r"
    assert interaction_for(Action.VREAD, instance=True) == "r"
    assert interaction_for(Action.HISTORY, instance=True) == "r"
    assert interaction_for(Action.HISTORY, instance=False) == "s"
    assert interaction_for(Action.SEARCH, instance=False) == "s"
    assert interaction_for(Action.UPDATE, instance=True) == "u"
    assert interaction_for(Action.PATCH, instance=True) == "u"
    assert interaction_for(Action.DELETE, instance=True) == "d"


def test_unscoped_principal_keeps_its_rights() -> None:
    p = Principal(subject="admin", roles=frozenset({"bootstrap-admin"}))
    assert POLICY.decide(p, Action.DELETE, "Observation", res_id="x").allowed


def test_empty_scopes_allow_nothing() -> None:
    p = principal()
    decision = POLICY.decide(p, Action.READ, "Patient", res_id="p1")
    assert not decision.allowed
    assert decision.denial is Denial.FORBIDDEN


def test_scopes_limit_types_and_interactions() -> None:
    p = principal("user/Observation.rs", "user/Patient.r")
    assert POLICY.decide(p, Action.READ, "Observation", res_id="o").allowed
    assert POLICY.decide(p, Action.SEARCH, "Observation").allowed
    assert POLICY.decide(p, Action.READ, "Patient", res_id="p").allowed
    for action, res_type, res_id in [
        (Action.SEARCH, "Patient", None),
        (Action.CREATE, "Observation", None),
        (Action.UPDATE, "Observation", "o"),
        (Action.DELETE, "Observation", "o"),
        (Action.READ, "Condition", "c"),
        (Action.HISTORY, "*", None),
    ]:
        decision = POLICY.decide(p, action, res_type, res_id=res_id)
        assert not decision.allowed, (action, res_type)
        assert decision.denial is Denial.FORBIDDEN


def test_scopes_never_widen_roles() -> None:
    # A role that may only read Patients, with a token granting everything: reads of Patients
    # only (the intersection, SMART-SC-05 / ASVS 8.3.3).
    policy = ScopedPolicy(RolePolicy({"clerk": (Grant("Patient", frozenset({Action.READ})),)}))
    p = principal("user/*.cruds", roles="clerk")
    assert policy.decide(p, Action.READ, "Patient", res_id="p").allowed
    assert not policy.decide(p, Action.READ, "Observation", res_id="o").allowed
    assert not policy.decide(p, Action.UPDATE, "Patient", res_id="p").allowed


def test_wildcard_and_system_level() -> None:
    p = principal("system/*.rs")
    assert POLICY.decide(p, Action.HISTORY, ALL_TYPES).allowed
    assert POLICY.decide(p, Action.READ, "FutureType", res_id="x").allowed
    typed = principal("system/Observation.rs")
    assert not POLICY.decide(typed, Action.HISTORY, ALL_TYPES).allowed
    assert POLICY.decide(typed, Action.HISTORY, "Observation").allowed


def test_patient_scope_reaches_only_the_launch_patient() -> None:
    p = principal("patient/*.rs", patient="p1")
    assert POLICY.decide(p, Action.READ, "Patient", res_id="p1").allowed
    other = POLICY.decide(p, Action.READ, "Patient", res_id="p2")
    assert not other.allowed
    assert other.denial is Denial.OUT_OF_SCOPE  # the gate answers 404: nothing leaks
    assert POLICY.decide(p, Action.READ, "Observation", res_id="o").allowed  # before loading
    assert POLICY.decide(p, Action.READ, "Observation", observation("p1"), res_id="o").allowed
    theirs = POLICY.decide(p, Action.READ, "Observation", observation("p2"), res_id="o")
    assert theirs.denial is Denial.OUT_OF_SCOPE


def test_patient_scope_without_patient_in_context_allows_nothing() -> None:
    p = principal("patient/*.rs")  # SMART-SC-07
    assert not POLICY.decide(p, Action.READ, "Patient", res_id="p1").allowed
    assert not POLICY.decide(p, Action.SEARCH, "Observation").allowed


def test_patient_scope_writes_stay_in_the_compartment() -> None:
    p = principal("patient/Observation.cruds", patient="p1")
    assert POLICY.decide(p, Action.CREATE, "Observation", observation("p1")).allowed
    refused = POLICY.decide(p, Action.CREATE, "Observation", observation("p2"))
    assert refused.denial is Denial.OUT_OF_SCOPE


def test_types_outside_the_compartment_are_unreachable_with_patient_scopes() -> None:
    p = principal("patient/*.rs", patient="p1")
    practitioner = {"resourceType": "Practitioner", "id": "dr"}
    decision = POLICY.decide(p, Action.READ, "Practitioner", practitioner, res_id="dr")
    assert decision.denial is Denial.OUT_OF_SCOPE


def test_user_scope_is_not_limited_to_the_launch_patient() -> None:
    p = principal("user/Observation.rs", patient="p1")
    assert POLICY.decide(p, Action.READ, "Observation", observation("p2"), res_id="o").allowed


def test_granular_category_scope() -> None:
    p = principal(f"patient/Observation.rs?category={LAB}|laboratory", patient="p1")
    lab = observation("p1", "laboratory")
    vitals = observation("p1", "vital-signs")
    assert POLICY.decide(p, Action.READ, "Observation", lab, res_id="o").allowed
    assert POLICY.decide(p, Action.READ, "Observation", vitals, res_id="o").denial is (
        Denial.OUT_OF_SCOPE
    )
    # Two scopes: either may allow.
    both = principal(
        f"patient/Observation.rs?category={LAB}|laboratory",
        f"patient/Observation.rs?category={LAB}|vital-signs",
        patient="p1",
    )
    assert POLICY.decide(both, Action.READ, "Observation", vitals, res_id="o").allowed


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (f"{LAB}|laboratory", True),
        ("laboratory", True),
        (f"{LAB}|", True),
        ("|laboratory", False),  # the coding has a system
        ("other|laboratory", False),
        (f"{LAB}|vital-signs", False),
        ("vital-signs,laboratory", True),
    ],
)
def test_token_semantics(token: str, expected: bool) -> None:
    assert matches_query(observation("p1"), (("category", token),)) is expected


def test_code_and_status_parameters() -> None:
    obs = observation("p1")
    assert matches_query(obs, (("status", "final"),))
    assert not matches_query(obs, (("status", "preliminary"),))
    coded = {**obs, "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]}}
    assert matches_query(coded, (("code", "http://loinc.org|1-8"),))
    system_less = {**obs, "category": [{"coding": [{"code": "laboratory"}]}]}
    assert matches_query(system_less, (("category", "|laboratory"),))


def test_unknown_query_parameter_fails_closed() -> None:
    assert not matches_query(observation("p1"), (("date", "2020"),))


def test_backend_role_grants_nothing_without_scopes() -> None:
    undelegated = Principal(
        subject="svc", kind=PrincipalKind.CLIENT, roles=frozenset({"backend-service"})
    )
    assert not POLICY.decide(undelegated, Action.READ, "Patient", res_id="p").allowed
    delegated = Principal(
        subject="svc",
        kind=PrincipalKind.CLIENT,
        roles=frozenset({"backend-service"}),
        scopes=scopes("system/Patient.r"),
    )
    assert POLICY.decide(delegated, Action.READ, "Patient", res_id="p").allowed


def test_unknown_action_is_refused() -> None:
    decision = POLICY.decide(principal("user/*.cruds"), "fly", "Patient")  # type: ignore[arg-type]
    assert not decision.allowed
    direct = scope_decision(principal("user/*.cruds"), "fly", "Patient")  # type: ignore[arg-type]
    assert direct.denial is Denial.FORBIDDEN


@pytest.mark.parametrize(
    "category",
    [{"text": "lab"}, 7, None, [{"system": LAB, "code": 3}], {"system": 1, "code": "laboratory"}],
)
def test_category_shapes_that_do_not_match_a_system_code(category: object) -> None:
    obs = {**observation("p1"), "category": category}
    assert not matches_query(obs, (("category", f"{LAB}|laboratory"),))
