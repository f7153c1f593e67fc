"""Relationships are written by someone else (docs/design.md, "Relationships are written by
someone else"), on every engine: nobody writes a care relationship, practitioner role or
Consent that widens their own access, and nothing of the kind is written under a
break-the-glass grant, through any write path; links for others are written as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from hearth.domain import ErrorCode, HearthError, Principal, PrincipalKind, errors
from hearth.fhir.search import Context, parse_search
from hearth.storage import RecordRepository
from tests.access_world import LINKED, World, build_world, observation
from tests.support import Instance, admin

pytestmark = [pytest.mark.engines]


def patients_seen(repo: RecordRepository) -> int | None:
    request = parse_search("Patient", [], ctx=Context(now_us=0), default_count=1, max_count=1)
    return repo.search(request).total


def refused(code: ErrorCode, write: Callable[[], Any]) -> None:
    with pytest.raises(HearthError) as caught:
        write()
    assert caught.value.code is code
    assert caught.value.status == 403


def denials(world: World, actor: str) -> list[dict[str, Any]]:
    """The actor's audited denials carrying a self-link or emergency-relationship code."""
    codes = (errors.SELF_LINK.code, errors.BREAK_GLASS_RELATIONSHIP.code)
    with world.container.db.read.connect() as conn:
        rows = conn.execute(
            text("SELECT body FROM audit_entry WHERE actor = :a ORDER BY seq"), {"a": actor}
        ).scalars()
        bodies = [orjson.loads(bytes(b)) for b in rows]
    return [b for b in bodies if b.get("code") in codes]


def role_of(practitioner: str, organization: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "organization": {"reference": f"Organization/{organization}"},
        **extra,
    }


def team(patient: str, *members: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": m}} for m in members],
    }


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def linked_user(world: World, name: str, role: str, practitioner: str) -> Principal:
    """A new user holding ``role``, linked to ``practitioner``."""
    container = world.container
    info, _ = container.users.add(name, roles=frozenset({role}), by="test", link_ttl=None)
    container.access.link_user(
        container.system_principal("cli"), name, practitioner=practitioner, patient=None
    )
    return Principal(subject=info.user_id, kind=PrincipalKind.USER, roles=frozenset({role}))


def test_nobody_gives_themselves_an_organizations_patients(instance: Instance) -> None:
    """The first attack: a physician's PractitionerRole naming their own Practitioner and an
    organization whose patients they would then all see."""
    world = build_world(instance.container)
    container, ids = world.container, world.ids
    root = container.repository(admin())
    org = root.create({"resourceType": "Organization", "name": "Elsewhere"}).res_id
    managed = [
        root.create(
            {
                "resourceType": "Patient",
                "managingOrganization": {"reference": f"Organization/{org}"},
            }
        ).res_id
        for _ in range(3)
    ]
    doc = world.repo("physician")
    before = patients_seen(doc)
    assert before == len(LINKED)

    refused(errors.SELF_LINK, lambda: doc.create(role_of(ids["doc"], org)))
    # Made active again, moved to another organization (by update and by patch), or someone
    # else's role turned into one's own: each would widen the physician's access.
    inactive = root.read("PractitionerRole", ids["role_inactive"]).resource
    assert inactive is not None
    refused(
        errors.SELF_LINK,
        lambda: doc.update("PractitionerRole", ids["role_inactive"], {**inactive, "active": True}),
    )
    active = root.read("PractitionerRole", ids["role_active"]).resource
    assert active is not None
    moved = {**active, "organization": {"reference": f"Organization/{org}"}}
    refused(errors.SELF_LINK, lambda: doc.update("PractitionerRole", ids["role_active"], moved))
    refused(
        errors.SELF_LINK,
        lambda: doc.update_with("PractitionerRole", ids["role_active"], lambda _: moved),
    )
    colleague = root.create(role_of(ids["other_p"], org)).res_id
    taken = {**role_of(ids["doc"], org), "id": colleague}
    refused(errors.SELF_LINK, lambda: doc.update("PractitionerRole", colleague, taken))
    # In a transaction (with a conditional create) nothing of it is applied.
    bundles = container.bundles(world.principal("physician"))
    with pytest.raises(HearthError) as in_bundle:
        bundles.process(
            transaction(
                {
                    "request": {"method": "POST", "url": "Observation"},
                    "resource": observation(ids["careteam"]),
                },
                {
                    "request": {
                        "method": "POST",
                        "url": "PractitionerRole",
                        "ifNoneExist": f"practitioner={ids['doc']}&organization={org}",
                    },
                    "resource": role_of(ids["doc"], org),
                },
            ),
            base="http://h/fhir",
            representation=True,
        )
    assert in_bundle.value.code is errors.SELF_LINK
    assert patients_seen(world.repo("physician")) == before
    with pytest.raises(HearthError) as hidden:
        world.repo("physician").read("Patient", managed[0])
    assert hidden.value.code is errors.NOT_FOUND
    audited = denials(world, world.users["physician"])
    assert [(e["action"], e["type"], e["outcome"]) for e in audited] == [
        ("create", "PractitionerRole", "denied"),
        ("update", "PractitionerRole", "denied"),
        ("update", "PractitionerRole", "denied"),
        ("patch", "PractitionerRole", "denied"),
        ("update", "PractitionerRole", "denied"),
        ("create", "PractitionerRole", "denied"),
    ]
    del audited

    # Losing a role is a change of membership too: it would lift a Consent that denies the
    # role's Organization while a care team still reaches the patient. Inactive roles count:
    # a link to one takes effect when an administrator makes it active again.
    refused(
        errors.SELF_LINK,
        lambda: doc.update("PractitionerRole", ids["role_active"], {**active, "active": False}),
    )
    refused(errors.SELF_LINK, lambda: doc.delete("PractitionerRole", ids["role_active"]))
    refused(
        errors.SELF_LINK,
        lambda: doc.create(team(ids["careteam"], f"PractitionerRole/{ids['role_inactive']}")),
    )

    # What stays as it was: an edit of one's own role that changes no membership, and a role
    # for a colleague.
    doc.update("PractitionerRole", ids["role_active"], {**active, "period": {"start": "2020"}})
    doc.create(role_of(ids["other_p"], org))
    assert patients_seen(world.repo("physician")) == before
    # The administrator, who manages the directory, writes the physician's role; their access
    # follows at once.
    world.repo("administrator").create(role_of(ids["doc"], org))
    assert patients_seen(world.repo("physician")) == before + len(managed)

    # No role is exempt for itself: an administrator linked to a Practitioner, and an
    # unrestricted user (bootstrap-admin), do not write their own roles either.
    clerk = linked_user(world, "u-admin-linked", "administrator", ids["nurse_p"])
    refused(
        errors.SELF_LINK,
        lambda: container.repository(clerk).create(role_of(ids["nurse_p"], org)),
    )
    boss = linked_user(world, "u-boot-linked", "bootstrap-admin", ids["pharm_p"])
    boot = container.repository(boss)
    refused(errors.SELF_LINK, lambda: boot.create(role_of(ids["pharm_p"], org)))
    refused(
        errors.SELF_LINK,
        lambda: boot.create(team(ids["stranger"], f"Practitioner/{ids['pharm_p']}")),
    )
    boot.create(role_of(ids["nurse_p"], org))  # someone else's: as before


def test_nobody_puts_themselves_on_a_patients_care_team(instance: Instance) -> None:
    """CareTeam, Encounter, EpisodeOfCare and Patient links naming the physician, their role or
    their organization; a Consent that restricts them. Links for others are written as before."""
    world = build_world(instance.container)
    ids = world.ids
    me, nurse = f"Practitioner/{ids['doc']}", f"Practitioner/{ids['nurse_p']}"
    clinic = {"reference": f"Organization/{ids['clinic']}"}
    doc = world.repo("physician")
    patient = ids["careteam"]  # already linked: a second link would outlive the first

    refused(errors.SELF_LINK, lambda: doc.create(team(patient, me)))
    role = f"PractitionerRole/{ids['role_active']}"
    refused(errors.SELF_LINK, lambda: doc.create(team(patient, nurse, role)))
    # Each refusal names the patient the care team is about (their access report shows it).
    assert [e.get("patient") for e in denials(world, world.users["physician"])] == [patient] * 2
    theirs = doc.create(team(patient, nurse)).res_id  # a colleague's: allowed
    added = {**team(patient, nurse, me), "id": theirs}
    refused(errors.SELF_LINK, lambda: doc.update("CareTeam", theirs, added))
    refused(errors.SELF_LINK, lambda: doc.update_with("CareTeam", theirs, lambda _: added))
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{ids['gp']}"},
    }
    refused(
        errors.SELF_LINK,
        lambda: doc.create({**encounter, "participant": [{"individual": {"reference": me}}]}),
    )
    refused(errors.SELF_LINK, lambda: doc.create({**encounter, "serviceProvider": clinic}))
    doc.create({**encounter, "participant": [{"individual": {"reference": nurse}}]})
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{patient}"},
        "careManager": {"reference": me},
    }
    refused(errors.SELF_LINK, lambda: doc.create(episode))
    person = doc.read("Patient", patient).resource
    assert person is not None
    refused(
        errors.SELF_LINK,
        lambda: doc.update("Patient", patient, {**person, "managingOrganization": clinic}),
    )
    # A Consent that denies the physician Observations: they may not lift it, by any edit.
    root = world.container.repository(admin())
    request = parse_search(
        "Consent",
        [("patient", ids["consent_obs_only"])],
        ctx=Context(now_us=0),
        default_count=10,
        max_count=10,
    )
    (consent,) = root.search(request).matches
    assert consent.resource is not None
    lifted = {**consent.resource, "status": "inactive"}
    refused(errors.SELF_LINK, lambda: doc.update("Consent", consent.res_id, lifted))
    refused(errors.SELF_LINK, lambda: doc.delete("Consent", consent.res_id))
    with pytest.raises(HearthError) as still:
        world.repo("physician").read("Observation", world.obs["consent_obs_only"])
    assert still.value.code is errors.NOT_FOUND
    assert len(denials(world, world.users["physician"])) == 10

    # An existing team the physician is on: edited, a colleague added, ended; a patient's
    # demographics edited; a colleague's team deleted. None of it widens their access.
    current = doc.read("CareTeam", ids["team_careteam"]).resource
    assert current is not None
    grown = {**current, "participant": [*current["participant"], {"member": {"reference": nurse}}]}
    doc.update("CareTeam", ids["team_careteam"], grown)
    doc.update("Patient", patient, {**person, "gender": "unknown"})
    doc.delete("CareTeam", theirs)
    doc.update("CareTeam", ids["team_careteam"], {**grown, "status": "inactive"})
    with pytest.raises(HearthError) as ended:
        world.repo("physician").read("Patient", patient)
    assert ended.value.code is errors.NOT_FOUND


def test_a_break_the_glass_grant_writes_no_relationship(instance: Instance) -> None:
    """The second attack: a care team written under a grant would keep the record open after
    the grant ends. Under a grant no relationship is written at all; care is still recorded."""
    world = build_world(instance.container)
    container, ids = world.container, world.ids
    stranger = ids["stranger"]
    me, nurse = f"Practitioner/{ids['doc']}", f"Practitioner/{ids['nurse_p']}"
    grant = container.break_glass.declare(
        world.principal("physician"), stranger, reason="Collapsed in the waiting room."
    ).grant_id
    urgent = world.repo("physician", break_glass=grant)
    urgent.create(observation(stranger))  # emergency treatment is recorded as before
    refused(errors.SELF_LINK, lambda: urgent.create(team(stranger, me)))
    refused(errors.BREAK_GLASS_RELATIONSHIP, lambda: urgent.create(team(stranger, nurse)))
    # A team that exists already: joining it is a self-link; ending it is still no write of a
    # relationship under a grant.
    root = container.repository(admin())
    existing = root.create(team(stranger, nurse)).res_id
    joined = {**team(stranger, nurse, me), "id": existing}
    refused(errors.SELF_LINK, lambda: urgent.update("CareTeam", existing, joined))
    refused(errors.BREAK_GLASS_RELATIONSHIP, lambda: urgent.delete("CareTeam", existing))
    person = urgent.read("Patient", stranger).resource  # read, as the grant allows
    assert person is not None
    edited = {**person, "gender": "unknown"}  # a type that states links: not even this
    refused(errors.BREAK_GLASS_RELATIONSHIP, lambda: urgent.update("Patient", stranger, edited))
    bundles = container.bundles(world.principal("physician", break_glass=grant))
    with pytest.raises(HearthError) as in_bundle:
        bundles.process(
            transaction(
                {"request": {"method": "POST", "url": "CareTeam"}, "resource": team(stranger, me)}
            ),
            base="http://h/fhir",
            representation=True,
        )
    assert in_bundle.value.code is errors.SELF_LINK
    audited = denials(world, world.users["physician"])
    assert len(audited) == 6
    assert {e["purpose"] for e in audited} == {"ETREAT"}
    assert {e["outcome"] for e in audited} == {"denied"}

    container.break_glass.end(world.principal("physician"), grant)
    with pytest.raises(HearthError) as after:
        world.repo("physician").read("Patient", stranger)
    assert after.value.code is errors.NOT_FOUND
