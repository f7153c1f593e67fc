"""Minimum necessary on every engine: a role can neither read nor test a masked element, not
through what a write answers with, nor through what a search matches (FHIR-SL-03; docs/design.md,
"Labels, masks, Consent").

The front-desk role masks ``Appointment.comment``, ``supportingInformation`` and ``reason*``,
and ``Encounter.reason*``, ``diagnosis`` and ``hospitalization``, among others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from hearth.domain import HearthError, Principal, PrincipalKind, SmartScope, errors
from hearth.fhir.search import Context, parse_search
from hearth.security import REDACTED, PatientScope, Role, RoleCatalog, default_catalog
from hearth.storage import RecordRepository
from hearth.storage.access import AccessControl, RoleStore
from tests.support import Instance, admin, repository

pytestmark = pytest.mark.engines

SNOMED = "http://snomed.info/sct"
DIABETES = "44054006"
COMMENT = "Discuss the biopsy result."
LOINC = "http://loinc.org"


@dataclass
class Clinic:
    instance: Instance
    ids: dict[str, str]

    def repo(self, *roles: str, subject: str = "u-desk") -> RecordRepository:
        principal = Principal(
            subject=subject,
            kind=PrincipalKind.USER,
            roles=frozenset(roles),
            source="127.0.0.1",
        )
        return self.instance.container.repository(principal)

    def stored(self, res_type: str, key: str) -> dict[str, Any]:
        resource = self.instance.container.repository(admin()).read(res_type, self.ids[key])
        assert resource.resource is not None
        return resource.resource


def clinic(instance: Instance) -> Clinic:
    root = instance.container.repository(admin())
    ids: dict[str, str] = {}

    def create(key: str, body: dict[str, Any]) -> str:
        ids[key] = root.create(body).res_id
        return ids[key]

    patient = create("patient", {"resourceType": "Patient", "name": [{"family": "Masked"}]})
    other = create("other", {"resourceType": "Patient", "name": [{"family": "Supporting"}]})
    visit = create(
        "visit",
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "reasonCode": [{"coding": [{"system": SNOMED, "code": DIABETES}], "text": "sugar"}],
            "hospitalization": {"specialArrangement": [{"coding": [{"code": "wheel"}]}]},
        },
    )
    create(
        "follow_up",
        {
            "resourceType": "Encounter",
            "status": "planned",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "partOf": {"reference": f"Encounter/{visit}"},
        },
    )
    create(
        "appointment",
        {
            "resourceType": "Appointment",
            "status": "booked",
            "description": "Review",
            "comment": COMMENT,
            "reasonCode": [{"coding": [{"system": SNOMED, "code": DIABETES}]}],
            "supportingInformation": [{"reference": f"Patient/{other}"}],
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
        },
    )
    return Clinic(instance, ids)


def redacted(resource: dict[str, Any] | None) -> bool:
    assert resource is not None
    return REDACTED in resource.get("meta", {}).get("security", [])


def search(
    repo: RecordRepository,
    res_type: str,
    *params: tuple[str, str],
    compartment: str | None = None,
) -> Any:
    request = parse_search(
        res_type, list(params), ctx=Context(now_us=0), default_count=50, max_count=100
    )
    return repo.search(request, query_text="(test)", compartment=compartment)


def denials(instance: Instance, actor: str) -> int:
    with instance.container.db.write.begin() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM audit_entry "
                "WHERE actor = :actor AND action = 'search' AND outcome = 'denied'"
            ),
            {"actor": actor},
        ).scalar_one()
    return int(found)


def test_what_a_write_answers_with_is_masked_as_a_read_is(instance: Instance) -> None:
    """The tester's first finding: update and patch answered with the carried-over comment."""
    world = clinic(instance)
    desk = world.repo("front-desk")
    res_id = world.ids["appointment"]
    read = desk.read("Appointment", res_id).resource
    assert read is not None
    assert "comment" not in read
    assert redacted(read)

    updated, created = desk.update("Appointment", res_id, {**read, "status": "arrived"})
    assert not created
    patched = desk.update_with("Appointment", res_id, lambda r: {**r, "description": "x"})
    for answer in (updated, patched):
        assert answer.resource is not None
        for element in ("comment", "reasonCode", "supportingInformation"):
            assert element not in answer.resource
        assert redacted(answer.resource)  # the same mark a read carries
    # What was stored is whole: the masked elements were carried over, the mark never stored.
    stored = world.stored("Appointment", "appointment")
    assert stored["comment"] == COMMENT
    assert stored["description"] == "x"
    assert "security" not in stored.get("meta", {})
    # A version read back through history and vread is masked the same way.
    history = desk.history(res_type="Appointment", res_id=res_id)
    assert history.page
    assert all("comment" not in s.resource for s in history.page if s.resource)
    assert "comment" not in (desk.vread("Appointment", res_id, 1).resource or {})

    # Nothing to mask: a create by the front desk answers with what it wrote, unmarked, and a
    # role without masks gets the whole resource back.
    made = desk.create(
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "participant": [{"actor": {"reference": f"Patient/{world.ids['patient']}"}}],
        }
    )
    assert made.resource is not None
    assert not redacted(made.resource)
    whole, _ = instance.container.repository(admin()).update("Appointment", res_id, stored)
    assert whole.resource is not None
    assert whole.resource["comment"] == COMMENT
    assert not redacted(whole.resource)


def test_conditional_writes_answer_masked(instance: Instance) -> None:
    """Conditional create, update and patch (R4 http.html#ccreate, #cond-update) and a
    transaction's entries with return=representation answer as a read would."""
    world = clinic(instance)
    desk_principal = Principal(
        subject="u-desk", kind=PrincipalKind.USER, roles=frozenset({"front-desk"})
    )
    bundles = instance.container.bundles(desk_principal)
    res_id = world.ids["appointment"]
    match = [("_id", res_id)]
    reads = read_entries(instance, "u-desk")
    found = bundles.conditional_create("Appointment", {"resourceType": "Appointment"}, match)
    assert found.status == 200
    # The match it answers with is disclosed: decided, masked and audited as a read.
    assert read_entries(instance, "u-desk") == reads + 1
    assert found.stored is not None
    assert found.stored.resource is not None
    assert "comment" not in found.stored.resource
    assert redacted(found.stored.resource)

    body = {k: v for k, v in found.stored.resource.items() if k != "meta"}
    updated = bundles.conditional_update("Appointment", match, {**body, "status": "arrived"})
    patched = bundles.conditional_patch(
        "Appointment", match, [{"op": "replace", "path": "/description", "value": "y"}]
    )
    for written in (updated, patched):
        assert written.stored is not None
        assert written.stored.resource is not None
        assert "comment" not in written.stored.resource
        assert redacted(written.stored.resource)

    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**body, "status": "fulfilled"},
                "request": {"method": "PUT", "url": f"Appointment/{res_id}"},
            },
            {
                "resource": {"resourceType": "Appointment", "status": "proposed"},
                "request": {
                    "method": "POST",
                    "url": "Appointment",
                    "ifNoneExist": f"_id={res_id}",
                },
            },
            {"request": {"method": "GET", "url": f"Appointment/{res_id}"}},
        ],
    }
    answer = bundles.process(transaction, base="https://h/fhir", representation=True)
    entries = answer["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "200"]
    for entry in entries:
        assert "comment" not in entry["resource"]
        assert redacted(entry["resource"])
    assert world.stored("Appointment", "appointment")["comment"] == COMMENT


def read_entries(instance: Instance, actor: str) -> int:
    with instance.container.db.write.begin() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM audit_entry WHERE actor = :actor AND action = 'read'"),
            {"actor": actor},
        ).scalar_one()
    return int(found)


#: Searches that read a masked element of the front desk's, each as (type, parameters).
MASKED_SEARCHES: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("Encounter", (("reason-code", f"{SNOMED}|{DIABETES}"),)),
    ("Encounter", (("reason-code:text", "sugar"),)),  # free text inside the masked element
    ("Encounter", (("reason-code:missing", "false"),)),
    ("Encounter", (("reason-code:not", f"{SNOMED}|{DIABETES}"),)),
    ("Encounter", (("status", "finished"), ("special-arrangement", "wheel"))),
    ("Encounter", (("diagnosis", "Condition/x"),)),
    ("Encounter", (("part-of:Encounter.reason-code", DIABETES),)),  # a chain
    ("Encounter", (("part-of.reason-code", DIABETES),)),
    ("Patient", (("_has:Encounter:subject:reason-code", DIABETES),)),
    ("Patient", (("_has:Appointment:patient:reason-code", DIABETES),)),
    ("Encounter", (("_sort", "reason-code"),)),
    ("Encounter", (("_sort", "-status,reason-code"),)),
    ("Encounter", (("_include", "Encounter:reason-reference"),)),
    ("Patient", (("_revinclude", "Appointment:supporting-info"),)),
    ("Appointment", (("supporting-info", "Patient/x"),)),
    ("Appointment", (("reason-code", DIABETES),)),
]


def test_a_search_that_reads_a_masked_element_is_refused(instance: Instance) -> None:
    """The tester's second finding: a masked element could be searched, probed by free text
    and reached through ``_has``. Every way a search reads one is refused, audited as denied,
    and the refusal names the parameter, never its value."""
    world = clinic(instance)
    desk = world.repo("front-desk")
    for res_type, params in MASKED_SEARCHES:
        with pytest.raises(HearthError) as refused:
            search(desk, res_type, *params)
        assert refused.value.code is errors.MASKED_SEARCH, params
        assert refused.value.status == 403
        assert refused.value.audited
        assert DIABETES not in str(refused.value.detail)
        assert "sugar" not in str(refused.value.detail)
    assert denials(instance, "u-desk") == len(MASKED_SEARCHES)

    # The same roles without the front desk's masks search by those elements.
    doc = world.repo("bootstrap-admin", subject="u-root")
    assert search(doc, "Encounter", ("reason-code", f"{SNOMED}|{DIABETES}")).total == 1
    assert search(doc, "Encounter", ("reason-code:text", "sugar")).total == 1


def test_conditions_that_read_a_masked_element_are_refused(instance: Instance) -> None:
    """A conditional write's condition or a conditional reference is a search too: whether
    it matched would tell the masked element."""
    clinic(instance)
    bundles = instance.container.bundles(
        Principal(subject="u-desk", kind=PrincipalKind.USER, roles=frozenset({"front-desk"}))
    )
    probe = [("reason-code", DIABETES)]
    body = {"resourceType": "Appointment", "status": "proposed"}
    calls = (
        lambda: bundles.conditional_create("Appointment", body, probe),
        lambda: bundles.conditional_update("Appointment", probe, body),
        lambda: bundles.conditional_delete("Appointment", probe),
        lambda: bundles.process(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            **body,
                            "basedOn": [{"reference": f"Appointment?reason-code={DIABETES}"}],
                        },
                        "request": {"method": "POST", "url": "Appointment"},
                    }
                ],
            },
            base="https://h/fhir",
            representation=False,
        ),
        lambda: bundles.process(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": "Encounter?reason-code=x"}}],
            },
            base="https://h/fhir",
            representation=False,
        ),
    )
    for call in calls[:4]:
        with pytest.raises(HearthError) as refused:
            call()
        assert refused.value.code is errors.MASKED_SEARCH
    batch = calls[4]()
    assert batch["entry"][0]["response"]["status"] == "403"
    assert "HRT-1113" in repr(batch["entry"][0]["response"]["outcome"])


def test_unmasked_parameters_and_includes_keep_working(instance: Instance) -> None:
    """Parameters, chains, ``_has``, sorts and includes that read only unmasked elements work
    for the front desk; an ``*`` include follows only the references it may read."""
    world = clinic(instance)
    desk = world.repo("front-desk")
    patient = world.ids["patient"]
    assert search(desk, "Encounter", ("status", "finished")).total == 1
    assert search(desk, "Encounter", ("patient", patient), ("_sort", "-status")).total == 2
    assert search(desk, "Encounter", ("part-of:Encounter.status", "finished")).total == 1
    has = search(desk, "Patient", ("_has:Encounter:subject:status", "planned"))
    assert [s.res_id for s in has.matches] == [patient]
    page = search(desk, "Encounter", ("status", "finished"), ("_include", "Encounter:subject"))
    assert [s.res_id for s in page.included] == [patient]
    # The appointment references the patient as a participant (readable) and the other
    # patient as supporting information (masked): ``*`` follows the first only.
    page = search(desk, "Appointment", ("_include", "*"))
    assert {s.res_id for s in page.included} == {patient}
    whole = search(
        world.repo("bootstrap-admin", subject="u-root"), "Appointment", ("_include", "*")
    )
    assert {s.res_id for s in whole.included} == {patient, world.ids["other"]}
    # A search within the patient's compartment reads Encounter.subject, which is not masked.
    assert search(desk, "Encounter", compartment=patient).total == 2
    revinclude = search(desk, "Patient", ("_id", patient), ("_revinclude", "Appointment:patient"))
    assert [s.res_id for s in revinclude.included] == [world.ids["appointment"]]
    assert all("comment" not in (s.resource or {}) for s in revinclude.included)

    # $everything follows the references of the patient's records the same way: not the one
    # held in the appointment's masked supportingInformation.
    def everything(repo: RecordRepository) -> set[str]:
        page = repo.everything(patient, types=None, since=None, offset=0, count=50)
        return {s.res_id for s in page.included}

    assert world.ids["other"] not in everything(desk)
    assert world.ids["other"] in everything(world.repo("bootstrap-admin", subject="u-root"))


def test_composite_parameters_and_several_roles(instance: Instance) -> None:
    """A composite parameter reads each of its components' elements; with several roles a
    search may not read what any role that searches the type masks, unless one of them
    reaches every row unmasked (fail closed: which role decides is known per resource)."""
    root = instance.container.repository(admin())
    patient = root.create({"resourceType": "Patient"}).res_id
    root.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"},
        }
    )
    shipped = default_catalog()
    values_masked = Role(
        name="no-values",
        patients=PatientScope.ALL,
        permissions=(SmartScope.parse("user/Observation.rs"), SmartScope.parse("user/Patient.rs")),
        masks={"Observation": ("performer", "value[x]")},
    )
    catalog = RoleCatalog(shipped.version, {**shipped.roles, "no-values": values_masked})
    c = instance.container
    policy = AccessControl(c.store, c.keyring, c.clock, RoleStore(c.store, defaults=catalog))

    def repo(*roles: str) -> RecordRepository:
        principal = Principal(subject="u-values", kind=PrincipalKind.USER, roles=frozenset(roles))
        return repository(c, principal, policy=policy)

    masked = repo("no-values")
    for params in (
        (("code-value-quantity", f"{LOINC}|8867-4$72"),),
        (("combo-code-value-quantity", f"{LOINC}|8867-4$72"),),
        (("value-quantity", "72"),),
        (("_sort", "value-quantity"),),
    ):
        with pytest.raises(HearthError) as refused:
            search(masked, "Observation", *params)
        assert refused.value.code is errors.MASKED_SEARCH, params
    found = search(masked, "Observation", ("code", f"{LOINC}|8867-4"))
    assert found.total == 1
    assert "valueQuantity" not in (found.matches[0].resource or {})
    # Observation.performer puts an Observation in a patient's compartment: a search within
    # one and $everything read it.
    with pytest.raises(HearthError) as compartment:
        search(masked, "Observation", compartment=patient)
    assert compartment.value.code is errors.MASKED_SEARCH
    with pytest.raises(HearthError) as everything:
        masked.everything(patient, types=None, since=None, offset=0, count=10)
    assert everything.value.code is errors.MASKED_SEARCH
    # Both refusals are audited against the Patient, so the patient's access report shows them.
    with instance.container.db.read.connect() as conn:
        refused_for = conn.execute(
            text(
                "SELECT res_type, res_id FROM audit_entry "
                "WHERE action = 'search' AND outcome = 'denied' ORDER BY seq DESC"
            )
        ).all()[:2]
    assert [tuple(row) for row in refused_for] == [("Patient", patient)] * 2
    own = masked.everything(patient, types=["Patient"], since=None, offset=0, count=10)
    assert [s.res_id for s in own.matches] == [patient]

    # Beside a role that reaches every row unmasked, nothing is masked; beside the physician
    # (unmasked, but only for linked patients) the masks of the other role still hold.
    both_roles = repo("no-values", "bootstrap-admin")
    assert search(both_roles, "Observation", ("value-quantity", "72")).total == 1
    with pytest.raises(HearthError) as both:
        search(repo("no-values", "physician"), "Observation", ("value-quantity", "72"))
    assert both.value.code is errors.MASKED_SEARCH
