"""The care relationships one resource states (hearth.security.relationships.care_links)."""

from __future__ import annotations

from hearth.cli.migrate import needs_reindex
from hearth.security import care_links

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
