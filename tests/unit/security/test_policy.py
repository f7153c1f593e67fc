from __future__ import annotations

from hearth.domain import Action, Principal
from hearth.security import ALL_TYPES, Denial, Grant, RolePolicy, bootstrap_roles


def test_deny_by_default_and_grants_by_role() -> None:
    policy = RolePolicy(
        {**bootstrap_roles(), "reader": (Grant("Observation", frozenset({Action.READ})),)}
    )
    nobody = Principal("nobody")
    reader = Principal("r", roles=frozenset({"reader"}))
    admin = Principal("a", roles=frozenset({"bootstrap-admin"}))
    for action in Action:
        assert not policy.decide(nobody, action, "Patient").allowed
        assert policy.decide(admin, action, "Patient").allowed
    assert policy.decide(reader, Action.READ, "Observation").allowed
    denied = policy.decide(reader, Action.READ, "Patient")
    assert not denied.allowed
    assert denied.denial is Denial.FORBIDDEN
    assert not policy.decide(reader, Action.UPDATE, "Observation").allowed
    unknown = policy.decide(admin, "export", "Patient")  # type: ignore[arg-type]
    assert not unknown.allowed
    assert ALL_TYPES == "*"
