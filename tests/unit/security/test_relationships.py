"""The care relationships one resource states (hearth.security.relationships.care_links), and
the rule that nobody writes one that widens their own access (``widens``)."""

from __future__ import annotations

from hearth.cli.migrate import needs_reindex
from hearth.security import Stated, care_links, denied_actors, role_actors, widens

TEAM = {"resourceType": "CareTeam", "status": "active"}
REFS = {
    ("participant", "Practitioner", "doc"),
    ("participant", "Organization", "org"),
    ("participant", "RelatedPerson", "mum"),  # not an actor a principal works as
    ("subject", "Patient", "p1"),
}


def test_an_active_care_team_links_its_actors_to_its_patients() -> None:
    assert care_links("CareTeam", TEAM, REFS, {"p1"}) == {
        ("Practitioner", "doc", "p1"),
        ("Organization", "org", "p1"),
    }


def test_dead_statuses_and_unrelated_types_link_nobody() -> None:
    for status in ("inactive", "entered-in-error"):
        assert care_links("CareTeam", {**TEAM, "status": status}, REFS, {"p1"}) == frozenset()
    assert care_links("Observation", {"status": "final"}, REFS, {"p1"}) == frozenset()
    assert care_links("CareTeam", TEAM, REFS, ()) == frozenset()  # no patient, no link


def test_patients_name_their_own_providers() -> None:
    refs = {
        ("general-practitioner", "PractitionerRole", "role"),
        ("organization", "Organization", "org"),
    }
    assert care_links("Patient", {"resourceType": "Patient"}, refs, {"me"}) == {
        ("PractitionerRole", "role", "me"),
        ("Organization", "org", "me"),
    }


def test_encounters_link_unless_cancelled() -> None:
    refs = {("participant", "Practitioner", "doc"), ("service-provider", "Organization", "org")}
    finished = care_links("Encounter", {"status": "finished"}, refs, {"p"})
    assert finished == {("Practitioner", "doc", "p"), ("Organization", "org", "p")}
    assert care_links("Encounter", {"status": "cancelled"}, refs, {"p"}) == frozenset()


def test_migrating_across_the_care_link_table_rebuilds_the_index() -> None:
    assert needs_reindex("0007", "0008")
    assert needs_reindex("0005", "0009")
    assert not needs_reindex(None, "0008")  # a new database has nothing to index
    assert not needs_reindex("0008", "0008")
    assert not needs_reindex("0008", "0009")
    assert needs_reindex("0010", "0011")  # combo-* parameters lost their own index rows


DOC = frozenset({("Practitioner", "doc"), ("PractitionerRole", "r1"), ("Organization", "org")})


def test_a_practitioner_role_makes_its_practitioner_act_as_it_and_its_organizations() -> None:
    refs = {
        ("practitioner", "Practitioner", "doc"),
        ("organization", "Organization", "o2"),
        ("location", "Location", "ward"),
    }
    role = {"resourceType": "PractitionerRole", "id": "r2"}
    assert role_actors(role, refs) == {
        ("doc", "PractitionerRole", "r2"),
        ("doc", "Organization", "o2"),
    }
    assert role_actors({**role, "active": False}, refs) == frozenset()
    assert role_actors({**role, "active": True}, refs) == role_actors(role, refs)
    unsaved = {"resourceType": "PractitionerRole"}  # no id yet: its organizations only
    assert role_actors(unsaved, refs) == {("doc", "Organization", "o2")}


def test_a_link_to_one_of_ones_own_actors_widens_ones_access() -> None:
    nothing = Stated()
    mine = Stated(links=frozenset({("Practitioner", "doc", "a")}))
    via_org = Stated(links=frozenset({("Organization", "org", "b")}))
    theirs = Stated(links=frozenset({("Practitioner", "nurse", "a")}))
    assert widens(DOC, "doc", nothing, mine)  # a new care team with oneself on it
    assert widens(DOC, "doc", nothing, via_org)  # one's organization is an actor too
    assert widens(DOC, "doc", theirs, Stated(links=theirs.links | mine.links))  # added to it
    moved = Stated(links=frozenset({("Practitioner", "doc", "b")}))
    assert widens(DOC, "doc", mine, moved)  # the team moved to another patient
    assert not widens(DOC, "doc", nothing, theirs)  # a link for someone else
    assert not widens(DOC, "doc", mine, Stated(links=mine.links | theirs.links))  # kept
    assert not widens(DOC, "doc", mine, nothing)  # ended or deleted: access only shrinks
    assert not widens(frozenset(), None, nothing, mine)  # a principal who acts as nobody


def test_a_practitioner_role_for_oneself_widens_ones_access() -> None:
    new_org = Stated(
        roles=frozenset({("doc", "PractitionerRole", "r9"), ("doc", "Organization", "o")})
    )
    assert widens(DOC, "doc", Stated(), new_org)
    same = Stated(
        roles=frozenset({("doc", "PractitionerRole", "r1"), ("doc", "Organization", "org")})
    )
    assert not widens(DOC, "doc", same, same)  # an edit that changes no membership
    # Made inactive, deleted or pointed at someone else: losing a role lifts the Consent
    # denials that name it, while the patient may still be reached through a care team.
    assert widens(DOC, "doc", same, Stated())
    other = Stated(roles=frozenset({("nurse", "Organization", "o")}))
    assert not widens(DOC, "doc", Stated(), other)


def test_nobody_edits_a_consent_that_restricts_them() -> None:
    consent = {
        "resourceType": "Consent",
        "status": "inactive",
        "provision": {
            "type": "permit",
            "actor": [{"reference": {"reference": "Practitioner/nurse"}}],
            "provision": [
                {"type": "deny", "actor": [{"reference": {"reference": "Organization/org"}}]},
                {"type": "deny", "actor": [{"reference": {"display": "no reference"}}]},
            ],
        },
    }
    restricts = Stated(restricted=denied_actors(consent))
    assert restricts.restricted == {("Organization", "org")}  # any status, nested, deny only
    assert denied_actors({"resourceType": "Consent", "status": "active"}) == frozenset()
    assert widens(DOC, "doc", restricts, restricts)
    assert widens(DOC, "doc", restricts, Stated())  # deleted
    assert not widens(DOC, "doc", Stated(), restricts)  # a restriction on oneself, added
    others = Stated(restricted=frozenset({("Practitioner", "nurse")}))
    assert not widens(DOC, "doc", others, Stated())
