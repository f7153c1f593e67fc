"""Access control on every engine: relationship scoping in SQL, labels, Consents, masks, roles,
SMART intersection (issue 5 items 1-5; docs/design.md, "Access control")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from hearth.domain import HearthError, Principal, PrincipalKind, SmartScope, errors
from hearth.fhir.deidentify import PSEUDED
from hearth.fhir.search import Context, parse_search
from hearth.security import (
    REDACTED,
    PatientScope,
    Role,
    RoleCatalog,
    View,
    default_catalog,
    role_to_json,
)
from hearth.storage import RecordRepository
from hearth.storage import access as access_module
from hearth.storage.access import AccessControl, RoleStore
from hearth.storage.sql import access as access_sql
from tests.access_world import (
    LINKED,
    OBS_CATEGORY,
    UNLINKED,
    World,
    build_world,
    observation,
    privacy_consent,
)
from tests.conftest import _server_database, requested_engines
from tests.support import admin, make_instance, repository

pytestmark = [pytest.mark.engines, pytest.mark.xdist_group("access-contract")]


@pytest.fixture(scope="module", params=requested_engines())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    engine = str(request.param)
    home: Path = tmp_path_factory.mktemp(f"access-{engine}") / "home"
    databases = _server_database(engine) if engine != "sqlite" else iter([None])
    url = next(databases)
    instance = make_instance(home, url)
    try:
        yield build_world(instance.container)
    finally:
        instance.container.close()
        for _ in databases:  # drop the server database
            pass


def search(
    repo: RecordRepository, res_type: str, *params: tuple[str, str], count: int = 100
) -> Any:
    request = parse_search(
        res_type, list(params), ctx=Context(now_us=0), default_count=count, max_count=1000
    )
    return repo.search(request)


def names(world: World, page_items: Any) -> set[str]:
    back = {v: k for k, v in world.obs.items()}
    return {back[s.res_id] for s in page_items if s.res_id in back}


def test_a_physician_sees_exactly_the_patients_linked_to_them(world: World) -> None:
    doc = world.repo("physician")
    page = search(doc, "Observation", ("category", "vital-signs"))
    visible = names(world, page.matches)
    expected = {n for n in LINKED if n != "consent_obs_only"}
    # Unlabelled and R-labelled records; never V or HIV (physician holds only R).
    assert visible == expected | {f"{n}:R" for n in expected}
    assert page.total == len(visible)  # counted in SQL: the total is right
    patients = search(doc, "Patient")
    assert {s.res_id for s in patients.matches} == {world.ids[n] for n in LINKED}
    assert patients.total == len(LINKED)


def test_paging_counts_only_reachable_rows(world: World) -> None:
    doc = world.repo("physician")
    first = search(doc, "Patient", count=3)
    assert first.total == len(LINKED)
    assert len(first.matches) == 3
    assert first.more
    seen = []
    offset = 0
    while True:
        request = parse_search("Patient", [], ctx=Context(now_us=0), default_count=3, max_count=3)
        page = doc.search(request, offset=offset)
        seen.extend(s.res_id for s in page.matches)
        if not page.more:
            break
        offset += 3
    assert sorted(seen) == sorted(world.ids[n] for n in LINKED)


@pytest.mark.parametrize("name", UNLINKED)
def test_an_unlinked_patient_reads_as_not_found(world: World, name: str) -> None:
    doc = world.repo("physician")
    for res_type, res_id in (("Patient", world.ids[name]), ("Observation", world.obs[name])):
        with pytest.raises(HearthError) as hidden:
            doc.read(res_type, res_id)
        assert hidden.value.code is errors.NOT_FOUND


def test_labels_need_an_explicit_permission(world: World) -> None:
    doc = world.repo("physician")
    assert doc.read("Observation", world.obs["careteam:R"]).resource is not None
    for key in ("careteam:V", "careteam:HIV"):
        with pytest.raises(HearthError) as hidden:
            doc.read("Observation", world.obs[key])
        assert hidden.value.code is errors.NOT_FOUND
    # The patient may see their own very restricted and HIV-labelled records.
    me = world.repo("patient")
    assert me.read("Observation", world.obs["careteam:V"]).res_id == world.obs["careteam:V"]
    assert me.read("Observation", world.obs["careteam:HIV"]).res_id == world.obs["careteam:HIV"]


def test_an_unrecognised_label_fails_closed(world: World) -> None:
    root = world.container.repository(admin())
    odd = observation(world.ids["careteam"])
    odd["meta"] = {"security": [{"system": "urn:local:labels", "code": "SECRET"}]}
    res_id = root.create(odd).res_id
    with pytest.raises(HearthError):
        world.repo("physician").read("Observation", res_id)
    with pytest.raises(HearthError):
        world.repo("patient").read("Observation", res_id)
    assert root.read("Observation", res_id).res_id == res_id  # "*" holds every label


def test_consent_denying_a_class_of_resources(world: World) -> None:
    doc = world.repo("physician")
    assert doc.read("Patient", world.ids["consent_obs_only"]).res_id
    with pytest.raises(HearthError) as hidden:
        doc.read("Observation", world.obs["consent_obs_only"])
    assert hidden.value.code is errors.NOT_FOUND
    # The expired denial no longer applies.
    assert doc.read("Observation", world.obs["consent_expired"]).res_id


def test_a_patient_sees_only_their_own_compartment(world: World) -> None:
    me = world.repo("patient")
    mine = world.ids["careteam"]
    page = search(me, "Observation")
    assert {s.resource["subject"]["reference"] for s in page.matches} == {f"Patient/{mine}"}
    assert page.total == 5
    assert [s.res_id for s in search(me, "Patient").matches] == [mine]
    with pytest.raises(HearthError) as hidden:
        me.read("Patient", world.ids["encounter"])
    assert hidden.value.code is errors.NOT_FOUND
    # Directory resources referenced from the record are readable; a Task (outside the patient
    # compartment, may hold PHI of anyone) is not.
    assert me.read("Practitioner", world.ids["doc"]).res_id == world.ids["doc"]
    with pytest.raises(HearthError):
        me.read("Task", world.ids["task"])
    with pytest.raises(HearthError) as write:
        me.create(observation(mine))
    assert write.value.code is errors.FORBIDDEN


def test_front_desk_sees_demographics_and_appointments_masked(world: World) -> None:
    desk = world.repo("front-desk")
    assert search(desk, "Patient").total >= len(LINKED) + len(UNLINKED)
    with pytest.raises(HearthError) as refused:
        desk.read("Observation", world.obs["stranger"])
    assert refused.value.code is errors.FORBIDDEN  # the role never grants Observation
    appointment = desk.read("Appointment", world.ids["appointment"]).resource
    assert appointment is not None
    assert "comment" not in appointment
    assert REDACTED["code"] in [c["code"] for c in appointment["meta"]["security"]]
    # A write without the masked element keeps it; one that sets it is refused.
    appointment["status"] = "arrived"
    desk.update("Appointment", world.ids["appointment"], appointment)
    root = world.container.repository(admin())
    stored = root.read("Appointment", world.ids["appointment"]).resource
    assert stored is not None
    assert stored["comment"] == "Discuss the biopsy result."
    assert stored["status"] == "arrived"
    assert "security" not in stored.get("meta", {})  # the REDACTED mark is never stored
    with pytest.raises(HearthError) as clobber:
        desk.update(
            "Appointment", world.ids["appointment"], {**appointment, "comment": "overwritten"}
        )
    assert clobber.value.code is errors.MASKED_FIELD


def test_a_patch_can_neither_read_nor_clobber_a_masked_element(world: World) -> None:
    desk = world.repo("front-desk")

    def probe(current: dict[str, Any]) -> dict[str, Any]:
        assert "comment" not in current  # the patch sees the masked view
        return {**current, "status": "booked"}

    desk.update_with("Appointment", world.ids["appointment"], probe)
    stored = world.container.repository(admin()).read("Appointment", world.ids["appointment"])
    assert stored.resource is not None
    assert stored.resource["comment"]
    with pytest.raises(HearthError) as clobber:
        desk.update_with("Appointment", world.ids["appointment"], lambda r: {**r, "comment": "x"})
    assert clobber.value.code is errors.MASKED_FIELD


def test_billing_sees_codes_never_narrative_or_notes(world: World) -> None:
    billing = world.repo("billing")
    condition = billing.read("Condition", world.ids["condition"]).resource
    assert condition is not None
    assert "note" not in condition
    assert "text" not in condition
    assert condition["code"]["coding"][0]["code"] == "38341003"
    with pytest.raises(HearthError) as refused:
        billing.read("Observation", world.obs["careteam"])
    assert refused.value.code is errors.FORBIDDEN


@pytest.mark.parametrize("role", ["administrator", "auditor", "privacy-officer"])
def test_roles_without_clinical_access_get_none(world: World, role: str) -> None:
    repo = world.repo(role)
    for res_type, res_id in (
        ("Patient", world.ids["careteam"]),
        ("Observation", world.obs["careteam"]),
    ):
        with pytest.raises(HearthError) as refused:
            repo.read(res_type, res_id)
        assert refused.value.code is errors.FORBIDDEN
    with pytest.raises(HearthError):
        search(repo, "Observation")


def test_the_pharmacist_sees_laboratory_results_only(world: World) -> None:
    pharm = world.repo("pharmacist")
    page = search(pharm, "Observation")
    assert names(world, page.matches) == {"careteam:lab"}  # linked through the care team
    with pytest.raises(HearthError):
        pharm.read("Observation", world.obs["careteam"])  # vital signs: not granted


def test_a_smart_token_is_the_intersection_of_rights_and_scopes(world: World) -> None:
    launch = world.ids["careteam"]
    app = world.repo("physician", scopes=("patient/Observation.rs",), patient=launch)
    page = search(app, "Observation")
    assert names(world, page.matches) == {"careteam", "careteam:R", "careteam:lab"}
    with pytest.raises(HearthError) as refused:
        app.read("Patient", launch)  # no scope for Patient
    assert refused.value.code is errors.FORBIDDEN
    # A launch patient the user may not see gives nothing: scopes never widen rights.
    stranger = world.repo(
        "physician", scopes=("patient/Observation.rs",), patient=world.ids["stranger"]
    )
    assert search(stranger, "Observation").total == 0
    # A granular user scope narrows in SQL.
    labs = world.repo("physician", scopes=("user/Observation.rs?category=laboratory",))
    lab_page = search(labs, "Observation")
    assert names(world, lab_page.matches) == {f"{n}:lab" for n in LINKED if n != "consent_obs_only"}
    assert lab_page.total == len(lab_page.matches)


def test_restricting_labels_survive_a_write_that_omits_them(world: World) -> None:
    doc = world.repo("physician")
    res_id = world.obs["careteam:R"]
    current = doc.read("Observation", res_id).resource
    assert current is not None
    bare = {k: v for k, v in current.items() if k != "meta"}
    doc.update("Observation", res_id, {**bare, "status": "amended"})
    stored = world.container.repository(admin()).read("Observation", res_id).resource
    assert stored is not None
    assert [c["code"] for c in stored["meta"]["security"]] == ["R"]
    assert stored["status"] == "amended"


def test_out_of_scope_writes_are_refused(world: World) -> None:
    doc = world.repo("physician")
    stranger = world.ids["stranger"]
    with pytest.raises(HearthError) as create:
        doc.create(observation(stranger))
    assert create.value.code is errors.FORBIDDEN
    with pytest.raises(HearthError) as update:
        doc.update("Observation", world.obs["stranger"], observation(stranger))
    assert update.value.code is errors.FORBIDDEN
    with pytest.raises(HearthError) as delete:
        doc.delete("Observation", world.obs["stranger"])
    assert delete.value.code is errors.FORBIDDEN
    # Moving a linked record to an unlinked patient is refused too.
    with pytest.raises(HearthError) as move:
        doc.update("Observation", world.obs["gp"], {**observation(stranger), "id": world.obs["gp"]})
    assert move.value.code is errors.FORBIDDEN


def test_audit_events_are_never_stored(world: World) -> None:
    with pytest.raises(HearthError) as refused:
        world.container.repository(admin()).create(
            {"resourceType": "AuditEvent", "type": {"code": "rest"}}
        )
    assert refused.value.code is errors.FORBIDDEN


# -- the paths through which records leak elsewhere (ASVS 8.2.2, X-08) --------------------------


def test_include_never_reaches_an_unlinked_patient(world: World) -> None:
    root = world.container.repository(admin())
    body = observation(world.ids["careteam"])
    body["performer"] = [{"reference": f"Patient/{world.ids['stranger']}"}]
    res_id = root.create(body).res_id
    doc = world.repo("physician")
    page = search(doc, "Observation", ("_id", res_id), ("_include", "Observation:performer"))
    assert [s.res_id for s in page.matches] == [res_id]
    assert page.included == []
    page = search(doc, "Observation", ("_id", res_id), ("_include", "Observation:subject"))
    assert [s.res_id for s in page.included] == [world.ids["careteam"]]


def test_revinclude_leaves_out_what_is_not_reachable(world: World) -> None:
    doc = world.repo("physician")
    page = search(
        doc, "Patient", ("_id", world.ids["careteam"]), ("_revinclude", "Observation:subject")
    )
    assert names(world, page.included) == {"careteam", "careteam:R", "careteam:lab"}
    # The practitioner's encounters include one with an unlinked (cancelled) patient.
    page = search(
        doc, "Practitioner", ("_id", world.ids["doc"]), ("_revinclude", "Encounter:participant")
    )
    assert {s.res_id for s in page.included} == {world.ids["encounter_res"]}


def test_chains_and_has_are_scoped_at_every_level(world: World) -> None:
    doc = world.repo("physician")
    assert search(doc, "Observation", ("subject:Patient.family", "Famstranger")).total == 0
    found = search(doc, "Observation", ("subject:Patient.family", "Famcareteam"))
    assert names(world, found.matches) == {"careteam", "careteam:R", "careteam:lab"}
    has = search(doc, "Patient", ("_has:Observation:subject:category", "vital-signs"))
    # consent_obs_only's Observations are denied to doc, so they reveal nothing either.
    reachable = {world.ids[n] for n in LINKED if n != "consent_obs_only"}
    assert {s.res_id for s in has.matches} == reachable
    # _has through an Observation the physician may not see does not reveal its patient.
    hidden = search(doc, "Patient", ("_has:Observation:subject:_security", "V"))
    assert hidden.total == 0


def test_everything_and_compartment_search_are_scoped(world: World) -> None:
    doc = world.repo("physician")
    page = doc.everything(world.ids["careteam"], types=None, since=None, offset=0, count=200)
    ids = {s.res_id for s in [*page.matches, *page.included]}
    assert world.obs["careteam"] in ids
    assert world.obs["careteam:R"] in ids
    assert world.obs["careteam:V"] not in ids
    assert world.obs["careteam:HIV"] not in ids
    with pytest.raises(HearthError) as hidden:
        doc.everything(world.ids["stranger"], types=None, since=None, offset=0, count=10)
    assert hidden.value.code is errors.NOT_FOUND
    request = parse_search("Observation", [], ctx=Context(now_us=0), default_count=50, max_count=50)
    page = doc.search(request, compartment=world.ids["stranger"])
    # Only what is also in a linked patient's record (an Observation of "careteam" that names
    # the stranger as performer, made by another test) may show; none of the stranger's own.
    assert names(world, page.matches) == set()
    linked = {f"Patient/{world.ids[n]}" for n in LINKED}
    assert all(s.resource["subject"]["reference"] in linked for s in page.matches)


def test_history_shows_only_versions_within_reach(world: World) -> None:
    root = world.container.repository(admin())
    doc = world.repo("physician")
    # Recorded for a stranger, then moved to a linked patient: version 1 must stay hidden.
    moved_in = root.create(observation(world.ids["stranger"])).res_id
    root.update("Observation", moved_in, {**observation(world.ids["gp"]), "id": moved_in})
    result = doc.history(res_type="Observation", res_id=moved_in)
    assert [v.version for v in result.page] == [2]
    assert result.total is None  # a total would tell of the version left out
    with pytest.raises(HearthError) as old:
        doc.vread("Observation", moved_in, 1)
    assert old.value.code is errors.NOT_FOUND
    # Recorded for a linked patient, then moved away: no version of it is listed any more.
    moved_out = root.create(observation(world.ids["gp"])).res_id
    root.update("Observation", moved_out, {**observation(world.ids["stranger"]), "id": moved_out})
    with pytest.raises(HearthError) as gone:
        doc.history(res_type="Observation", res_id=moved_out)
    assert gone.value.code is errors.NOT_FOUND
    page = doc.history(res_type="Observation", count=1000).page
    listed = {(v.res_id, v.version) for v in page}
    assert (moved_in, 2) in listed
    assert (moved_in, 1) not in listed
    assert not any(res_id == moved_out for res_id, _ in listed)
    assert not any(v.res_id == world.obs["stranger"] for v in page)
    assert not any(v.res_id == world.obs["careteam:V"] for v in page)
    with pytest.raises(HearthError) as system:
        doc.history()
    assert system.value.code is errors.FORBIDDEN


def test_a_read_scope_reads_by_id_but_does_not_search(world: World) -> None:
    app = world.repo("physician", scopes=("user/Observation.r",))
    assert app.read("Observation", world.obs["careteam"]).res_id == world.obs["careteam"]
    with pytest.raises(HearthError) as hidden:
        app.read("Observation", world.obs["stranger"])
    assert hidden.value.code is errors.NOT_FOUND
    with pytest.raises(HearthError) as refused:
        search(app, "Observation")
    assert refused.value.code is errors.FORBIDDEN


def test_transaction_and_batch_entries_are_decided_one_by_one(world: World) -> None:
    bundles = world.container.bundles(world.principal("physician"))
    mine, theirs = world.obs["careteam"], world.obs["stranger"]
    batch = bundles.process(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": f"Observation/{mine}"}},
                {"request": {"method": "GET", "url": f"Observation/{theirs}"}},
                {"request": {"method": "GET", "url": "Observation?category=vital-signs"}},
                {
                    "request": {"method": "POST", "url": "Observation"},
                    "resource": observation(world.ids["stranger"]),
                },
            ],
        },
        base="http://h/fhir",
        representation=True,
    )
    statuses = [e["response"]["status"] for e in batch["entry"]]
    assert statuses[0].startswith("200")
    assert statuses[1].startswith("404")
    assert statuses[3].startswith("403")
    found = {e["resource"]["id"] for e in batch["entry"][2]["resource"].get("entry", [])}
    assert theirs not in found
    assert mine in found
    # A transaction with one out-of-reach entry applies nothing.
    with pytest.raises(HearthError) as refused:
        bundles.process(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "request": {"method": "POST", "url": "Observation"},
                        "resource": observation(world.ids["careteam"]),
                    },
                    {"request": {"method": "DELETE", "url": f"Observation/{theirs}"}},
                ],
            },
            base="http://h/fhir",
            representation=True,
        )
    assert refused.value.status == 403


def test_care_relationships_are_indexed_on_write(world: World) -> None:
    """``search_care_link`` follows every write of a linking resource at once: a new care team
    opens the record, an inactive or deleted one closes it (counts and reads alike)."""
    container = world.container
    root = container.repository(admin())
    prac = root.create({"resourceType": "Practitioner", "name": [{"family": "Newcomer"}]}).res_id
    pat = root.create({"resourceType": "Patient", "name": [{"family": "Fresh"}]}).res_id
    obs = root.create(observation(pat)).res_id
    info, _ = container.users.add(
        "u-newcomer", roles=frozenset({"physician"}), by="test", link_ttl=None
    )
    container.access.link_user(
        container.system_principal("cli"), "u-newcomer", practitioner=prac, patient=None
    )
    newcomer = Principal(
        subject=info.user_id, kind=PrincipalKind.USER, roles=frozenset({"physician"})
    )

    def seen() -> tuple[set[str], int | None]:
        repo = container.repository(newcomer)
        found = search(repo, "Observation")
        assert search(repo, "Patient").total == (1 if found.matches else 0)
        if found.matches:
            assert repo.read("Observation", obs).res_id == obs
        else:
            with pytest.raises(HearthError) as hidden:
                repo.read("Observation", obs)
            assert hidden.value.code is errors.NOT_FOUND
        return {s.res_id for s in found.matches}, found.total

    def links() -> set[tuple[str, str, str]]:
        with container.db.read.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT actor_type, actor_id, patient_id FROM search_care_link "
                    "WHERE actor_id = :a"
                ),
                {"a": prac},
            ).all()
        return {(str(a), str(b), str(c)) for a, b, c in rows}

    assert seen() == (set(), 0)
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"Patient/{pat}"},
        "participant": [{"member": {"reference": f"Practitioner/{prac}"}}],
    }
    team_id = root.create(team).res_id
    assert links() == {("Practitioner", prac, pat)}
    assert seen() == ({obs}, 1)
    root.update("CareTeam", team_id, {**team, "id": team_id, "status": "inactive"})
    assert links() == set()
    assert seen() == (set(), 0)
    root.update("CareTeam", team_id, {**team, "id": team_id, "status": "active"})
    assert seen() == ({obs}, 1)
    root.delete("CareTeam", team_id)
    assert links() == set()
    assert seen() == (set(), 0)
    # An encounter the practitioner took part in links too, and an entered-in-error one not.
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "entered-in-error",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{pat}"},
        "participant": [{"individual": {"reference": f"Practitioner/{prac}"}}],
    }
    encounter_id = root.create(encounter).res_id
    assert seen() == (set(), 0)
    root.update("Encounter", encounter_id, {**encounter, "id": encounter_id, "status": "finished"})
    assert seen() == ({obs}, 1)
    root.delete("Encounter", encounter_id)
    assert seen() == (set(), 0)


def test_both_forms_of_care_team_scoping_give_the_same_answer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search with many unscoped candidates lists the linked patients' rows; a selective one
    probes per row (hearth.storage.searching._planned). Either way the physician gets exactly
    the linked patients' records and the right total."""
    from hearth.storage import searching

    listed: list[object] = []
    real = searching._listed

    def spy(cond: object) -> object:
        listed.append(cond)
        return real(cond)

    monkeypatch.setattr(searching, "_listed", spy)
    root = world.container.repository(admin())
    rare = {"system": "http://loinc.org", "code": "99999-9"}
    with root.batch() as batch:
        mine = {
            batch.create({**observation(world.ids["careteam"]), "code": {"coding": [rare]}}).res_id
            for _ in range(3)
        }
        for _ in range(120):  # far more than eight times the physician's linked patients
            batch.create({**observation(world.ids["stranger"]), "code": {"coding": [rare]}})
    doc = world.repo("physician")
    many = search(doc, "Observation", ("code", "http://loinc.org|99999-9"), count=2)
    assert many.total == 3
    paged = {s.res_id for s in many.matches}
    paged |= {
        s.res_id
        for s in doc.search(
            parse_search(
                "Observation",
                [("code", "http://loinc.org|99999-9")],
                ctx=Context(now_us=0),
                default_count=2,
                max_count=2,
            ),
            offset=2,
        ).matches
    }
    assert paged == mine
    forms = len(listed)
    few = search(doc, "Observation", ("_id", ",".join(sorted(mine))))
    assert {s.res_id for s in few.matches} == mine
    assert len(listed) == forms  # a selective search keeps the probe form
    chart = search(
        doc,
        "Observation",
        ("patient", world.ids["careteam"]),
        ("code", "http://loinc.org|99999-9"),
    )
    assert {s.res_id for s in chart.matches} == mine
    assert (
        len(listed) == forms
    )  # one patient's chart: the reference decides, the code is not counted
    if world.container.db.write.dialect.name == "sqlite":
        assert forms > 0  # the wide one was listed (the probe form is SQLite's only)


def test_a_new_consent_or_role_applies_at_once(world: World) -> None:
    """The gate keeps a principal's facts for a few seconds; a write of a Consent or a
    PractitionerRole in this process drops them at once."""
    root = world.container.repository(admin())
    patient = root.create({"resourceType": "Patient", "name": [{"family": "Cached"}]}).res_id
    obs = root.create(observation(patient)).res_id
    team = root.create(
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": f"Practitioner/{world.ids['doc']}"}}],
        }
    ).res_id
    doc = world.principal("physician")
    assert world.container.repository(doc).read("Observation", obs).res_id == obs
    consent = root.create(privacy_consent(patient, f"Practitioner/{world.ids['doc']}")).res_id
    with pytest.raises(HearthError) as denied:
        world.container.repository(doc).read("Observation", obs)
    assert denied.value.code is errors.NOT_FOUND
    root.delete("Consent", consent)
    assert world.container.repository(doc).read("Observation", obs).res_id == obs
    root.delete("CareTeam", team)  # leave the shared clinic as it was


def test_a_kept_scope_is_not_used_under_another_role_catalog(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A principal's compiled scopes are kept with its facts (hearth.storage.access). Another
    process's role edit reaches this one when its catalog reloads, even while the facts are
    still kept: a scope compiled under the old catalog is not used with the new one."""
    c = world.container
    now = [1000.0]
    monkeypatch.setattr(access_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    policy = AccessControl(c.store, c.keyring, c.clock, RoleStore(c.store))

    def visible() -> set[str]:
        repo = repository(c, world.principal("physician"), policy=policy)
        return names(world, search(repo, "Observation", ("category", "vital-signs")).matches)

    policy.roles.catalog()  # loaded at 1000 s
    now[0] += 3
    assert "stranger" not in visible()  # facts kept at 1003 s, scope compiled
    everyone = replace(default_catalog().roles["physician"], patients=PatientScope.ALL)
    row = access_sql.RoleRow(
        name="physician",
        definition=orjson.dumps(role_to_json(everyone), option=orjson.OPT_SORT_KEYS),
        deleted=False,
        revision=0,
        updated_us=0,
        updated_by="another-process",
    )
    with c.store.write() as conn:
        access_sql.save_role(conn, row)
    try:
        now[0] += 3  # the catalog (1000 s) has expired, the facts (1003 s) have not
        assert policy.cached_facts(world.users["physician"]) is not None
        assert "stranger" in visible()
    finally:
        with c.store.write() as conn:
            access_sql.drop_role_edit(conn, "physician")
        c.roles.invalidate()


def holding(world: World, user: str, *roles: str) -> RecordRepository:
    """The repository of ``user`` (named by its default role) holding that role and ``roles``."""
    principal = Principal(
        subject=world.users[user],
        kind=PrincipalKind.USER,
        roles=frozenset({user, *roles}),
        source="127.0.0.1",
    )
    return world.container.repository(principal)


def test_the_researcher_sees_every_patient_de_identified(world: World) -> None:
    """The de-identified view (hearth.fhir.deidentify): every patient, no identifier, keyed
    pseudonyms that still join, restricted labels left out, audited under the real ids."""
    sci = world.repo("researcher")
    keys = world.container.keyring
    page = search(
        sci,
        "Observation",
        ("category", f"{OBS_CATEGORY}|vital-signs"),
        ("_include", "Observation:subject"),
        count=1000,
    )
    pseudonyms = {keys.pseudonym("Observation", world.obs[n]): n for n in world.obs}
    seen = {pseudonyms[s.res_id] for s in page.matches if s.res_id in pseudonyms}
    # Every patient, linked to anyone or not; no R, V or HIV record (the role holds no label).
    assert seen == set(LINKED) | set(UNLINKED)
    for stored in page.matches:
        body = stored.resource
        assert body["id"] == stored.res_id
        assert PSEUDED in body["meta"]["security"]
        assert "note" not in body
        assert "lastUpdated" not in body["meta"]
        if stored.res_id in pseudonyms:
            real = world.ids[pseudonyms[stored.res_id].partition(":")[0]]
            assert body["subject"]["reference"] == f"Patient/{keys.pseudonym('Patient', real)}"
    included = {s.res_id for s in page.included}
    assert included >= {keys.pseudonym("Patient", world.ids[n]) for n in (*LINKED, *UNLINKED)}
    everything = repr([page.matches, page.included])
    for name, real in world.ids.items():
        assert real not in everything, name
    assert "Fam" not in everything  # the planted family names

    # The audit trail keeps the real ids: the patient's access report names the researcher.
    patient = world.ids["stranger"]
    report = world.container.audit_views.disclosures(admin(), patient, kind="access")
    assert world.users["researcher"] in repr(report.events)
    # Unsorted results come by (random) id, not in write order.
    ids = [s.res_id for s in page.matches]
    real = [world.obs[pseudonyms[i]] for i in ids if i in pseudonyms]
    assert real == sorted(real)


def test_a_researcher_writes_nothing_and_mixes_with_no_other_role(world: World) -> None:
    sci = world.repo("researcher")
    with pytest.raises(HearthError) as refused:
        sci.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert refused.value.code is errors.FORBIDDEN
    # Beside the auditor (real ids in the audit views) the de-identified role is inert.
    both = holding(world, "auditor", "researcher")
    assert not both.access.profile.deidentified
    with pytest.raises(HearthError) as nothing:
        search(both, "Observation")
    assert nothing.value.code is errors.FORBIDDEN


@pytest.mark.parametrize(
    ("what", "params"),
    [
        ("a name", (("name", "Famstranger"),)),
        ("an id", (("_id", "x"),)),
        ("a reference", (("subject", "Patient/x"),)),
        ("a chain", (("subject:Patient.family", "Famstranger"),)),
        ("a full date", (("birthdate", "1970-01-01"),)),
    ],
)
def test_the_researcher_cannot_single_anyone_out(
    world: World, what: str, params: tuple[tuple[str, str], ...]
) -> None:
    sci = world.repo("researcher")
    res_type = "Observation" if what in ("a reference", "a chain") else "Patient"
    with pytest.raises(HearthError) as refused:
        search(sci, res_type, *params)
    assert refused.value.code is errors.DEIDENTIFIED_VIEW, what
    assert refused.value.audited


def test_the_researcher_reads_no_record_and_no_history(world: World) -> None:
    sci = world.repo("researcher")
    patient = world.ids["stranger"]
    with pytest.raises(HearthError) as read:
        sci.read("Patient", patient)
    assert read.value.code is errors.FORBIDDEN
    with pytest.raises(HearthError) as history:
        sci.history(res_type="Observation")
    assert history.value.code is errors.DEIDENTIFIED_VIEW
    with pytest.raises(HearthError):
        sci.everything(patient, types=None, since=None, offset=0, count=10)
    request = parse_search("Observation", [], ctx=Context(now_us=0), default_count=10, max_count=10)
    with pytest.raises(HearthError) as compartment:
        sci.search(request, compartment=patient)
    assert compartment.value.code is errors.DEIDENTIFIED_VIEW


def test_a_researcher_who_is_also_a_physician_gets_the_identified_view_only(
    world: World,
) -> None:
    both = holding(world, "physician", "researcher")
    assert not both.access.profile.deidentified
    page = search(both, "Observation", ("category", "vital-signs"))
    assert names(world, page.matches) <= {*LINKED, *(f"{n}:R" for n in LINKED)}
    assert "stranger" not in names(world, page.matches)


def test_the_de_identified_backstops_fail_closed(world: World) -> None:
    """What validation already prevents still fails closed at the gate: a de-identified role
    that somehow holds write letters writes nothing, and a search whose criteria cannot be
    checked is refused."""
    c = world.container
    shipped = default_catalog()
    leaky = Role(
        name="leaky",
        patients=PatientScope.ALL,
        permissions=(SmartScope.parse("user/Observation.cruds"),),
        view=View.DEIDENTIFIED,
    )
    catalog = RoleCatalog(shipped.version, {**shipped.roles, "leaky": leaky})
    policy = AccessControl(c.store, c.keyring, c.clock, RoleStore(c.store, defaults=catalog))
    principal = Principal(
        subject=world.users["researcher"],
        kind=PrincipalKind.USER,
        roles=frozenset({"leaky"}),
        source="127.0.0.1",
    )
    repo = repository(c, principal, policy=policy)
    assert repo.access.profile.deidentified
    with pytest.raises(HearthError) as refused:
        repo.create(observation(world.ids["stranger"]))
    assert refused.value.code is errors.DEIDENTIFIED_VIEW
    assert refused.value.audited

    sci = world.repo("researcher")
    request = parse_search(
        "Observation",
        [("code", "http://loinc.org|8867-4")],
        ctx=Context(now_us=0),
        default_count=10,
        max_count=10,
    )
    with pytest.raises(HearthError) as unchecked:
        sci.search(replace(request, terms=()))
    assert unchecked.value.code is errors.DEIDENTIFIED_VIEW
