"""Roles as data: the shipped defaults, validation, edits (issue 5 item 2)."""

from __future__ import annotations

import pytest

from hearth.domain import HearthError, errors
from hearth.security.roles import (
    BOOTSTRAP_ADMIN,
    Capability,
    PatientScope,
    default_catalog,
    role_from_json,
    role_to_json,
)

DEFAULTS = {
    "physician",
    "nurse",
    "front-desk",
    "billing",
    "pharmacist",
    "researcher",
    "privacy-officer",
    "auditor",
    "administrator",
    "patient",
    "backend-service",
    BOOTSTRAP_ADMIN,
}


def test_the_default_set_ships_every_role_the_issue_names() -> None:
    catalog = default_catalog()
    assert catalog.version == 1
    assert catalog.names == DEFAULTS
    clinical = {name for name, role in catalog.roles.items() if role.clinical}
    assert clinical == {
        "physician",
        "nurse",
        "front-desk",
        "billing",
        "pharmacist",
        "patient",
        "researcher",
        "backend-service",
        BOOTSTRAP_ADMIN,
    }
    # The researcher: every patient, de-identified, searching only; no clinical data for
    # administrators by default.
    researcher = catalog.roles["researcher"]
    assert researcher.deidentified
    assert researcher.patients is PatientScope.ALL
    assert all(p.interactions == {"s"} for p in researcher.permissions)
    assert not researcher.labels
    assert catalog.roles["administrator"].patients is PatientScope.NONE
    assert Capability.ROLES_ADMIN in catalog.roles["administrator"].capabilities
    assert catalog.roles["patient"].patients is PatientScope.SELF
    assert "PSYTHPN" not in catalog.roles["patient"].labels  # 164.524(a)(1)
    assert catalog.roles[BOOTSTRAP_ADMIN].builtin


def test_definitions_round_trip() -> None:
    for role in default_catalog().roles.values():
        if not role.builtin:
            assert role_from_json(role.name, role_to_json(role)) == role


@pytest.mark.parametrize(
    ("name", "definition"),
    [
        ("X", {}),
        ("ok-name", []),
        ("ok-name", {"colour": "red"}),
        ("ok-name", {"description": 5}),
        ("ok-name", {"patients": "some"}),
        ("ok-name", {"permissions": "user/*.rs"}),
        ("ok-name", {"permissions": ["patient/*.rs"]}),
        ("ok-name", {"labels": ["SECRET"]}),
        ("ok-name", {"masks": []}),
        ("ok-name", {"masks": {"lowercase": ["note"]}}),
        ("ok-name", {"masks": {"Observation": ["note.text"]}}),
        ("ok-name", {"capabilities": ["fly"]}),
        ("ok-name", {"purpose": "FUN"}),
        ("ok-name", {"delegated_only": "yes"}),
        ("ok-name", {"view": "blurred"}),
        ("ok-name", {"view": "deidentified", "permissions": ["user/Observation.rs"]}),
        ("ok-name", {"view": "deidentified", "capabilities": ["audit.read"]}),
        ("ok-name", {"view": "deidentified", "labels": ["R"]}),
    ],
)
def test_invalid_definitions_are_refused(name: str, definition: object) -> None:
    with pytest.raises(HearthError) as refused:
        role_from_json(name, definition)  # type: ignore[arg-type]
    assert refused.value.code is errors.ROLE_INVALID


def test_a_malformed_permission_is_an_invalid_scope() -> None:
    with pytest.raises(HearthError) as refused:
        role_from_json("ok-name", {"permissions": ["user/Observation.sr"]})
    assert refused.value.code is errors.INVALID_SCOPE


def test_edits_replace_remove_and_never_touch_builtins() -> None:
    catalog = default_catalog().with_edits(
        {
            "nurse": None,
            "scribe": {"patients": "linked", "permissions": ["user/DocumentReference.cru"]},
            BOOTSTRAP_ADMIN: None,
        }
    )
    assert "nurse" not in catalog.names
    assert "scribe" in catalog.names
    assert BOOTSTRAP_ADMIN in catalog.names
    assert catalog.edited == {"nurse", "scribe"}
    assert [r.name for r in catalog.of(["scribe", "unknown", "physician"])] == [
        "physician",
        "scribe",
    ]
    assert catalog.get("nobody") is None
    scribe = catalog.roles["scribe"]
    assert scribe.clinical
    assert scribe.masks_for("DocumentReference") == ()
    billing = catalog.roles["billing"]
    assert billing.masks_for("Condition") == ("note", "text")
