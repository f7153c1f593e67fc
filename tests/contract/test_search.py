"""Search on every engine: each parameter type and modifier (R4 search.html), through the gate."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.domain import HearthError, errors
from hearth.fhir.search import Context, parse_search
from hearth.storage import RecordRepository
from tests.support import Instance, admin, repository

pytestmark = pytest.mark.engines

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MRN = "urn:oid:1.2.36.146.595.217.0.1"


def _patient(
    key: str, family: str, given: str, birth: str, gender: str, mrn: str
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": MRN,
                "value": mrn,
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
            }
        ],
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
        "active": True,
        "address": [{"city": "Springfield", "postalCode": "0" + key}],
        "telecom": [{"system": "email", "value": f"{key}@example.org"}],
        "meta": {"tag": [{"system": "urn:tags", "code": key}]},
    }


def _observation(
    patient: str, code: str, value: float, when: str, unit: str = "mm[Hg]"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}], "text": f"Code {code}"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "system": UCUM, "code": unit, "unit": unit},
    }


class World:
    def __init__(self, repo: RecordRepository) -> None:
        self.repo = repo
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def add(self, name: str, resource: dict[str, Any]) -> str:
        stored = self.repo.create(resource)
        self.ids[name] = stored.res_id
        self.names[stored.res_id] = name
        return stored.res_id

    def find(self, res_type: str, *params: tuple[str, str], **options: Any) -> list[str]:
        request = parse_search(
            res_type,
            list(params),
            ctx=Context(now_us=1_700_000_000_000_000),
            default_count=100,
            max_count=100,
            strict=options.pop("strict", True),
        )
        page = self.repo.search(request, **options)
        return sorted(self.names[s.res_id] for s in page.matches)

    def page(self, res_type: str, *params: tuple[str, str], offset: int = 0) -> Any:
        request = parse_search(
            res_type,
            list(params),
            ctx=Context(now_us=1_700_000_000_000_000),
            default_count=100,
            max_count=100,
            strict=True,
        )
        return self.repo.search(request, offset=offset)


@pytest.fixture
def world(instance: Instance) -> World:
    w = World(instance.container.repository(admin()))
    w.add("org", {"resourceType": "Organization", "name": "Good Health Clinic", "active": True})
    w.add(
        "doc",
        {
            "resourceType": "Practitioner",
            "name": [{"family": "House", "given": ["Greg"]}],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "999"}],
        },
    )
    ann = _patient("1", "Andersson", "Ann", "1970-05-12", "female", "A-1")
    ann["generalPractitioner"] = [{"reference": f"Practitioner/{w.ids['doc']}"}]
    ann["managingOrganization"] = {"reference": f"Organization/{w.ids['org']}"}
    w.add("ann", ann)
    w.add("bob", _patient("2", "Ändersen", "Bob", "1985", "male", "B-2"))
    w.add("cyd", _patient("3", "Castellanos-Wainwright-Smith", "Cyd", "2001-11", "other", "C-3"))
    deceased = _patient("4", "Dunn", "Dee", "1930-01-01", "female", "D-4")
    deceased["deceasedDateTime"] = "2020-02-02"
    deceased.pop("telecom")
    w.add("dee", deceased)
    ann_id, bob_id = w.ids["ann"], w.ids["bob"]
    w.add("o1", _observation(ann_id, "8480-6", 120, "2021-03-15T10:00:00Z"))
    w.add("o2", _observation(ann_id, "8480-6", 145.5, "2021-06-01T10:00:00+02:00"))
    w.add("o3", _observation(ann_id, "8462-4", 80, "2022-01-01"))
    w.add("o4", _observation(bob_id, "8480-6", 110, "2020-12-31T23:59:59Z"))
    period = _observation(bob_id, "29463-7", 72.3, "2021-01-01", unit="kg")
    period.pop("effectiveDateTime")
    period["effectivePeriod"] = {"start": "2021-03-01", "end": "2021-04-30"}
    period["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8867-4"}]}, "valueQuantity": {"value": 60}}
    ]
    w.add("o5", period)
    return w


def test_string_default_exact_contains_and_missing(world: World) -> None:
    assert world.find("Patient", ("name", "and")) == ["ann", "bob"]  # accent-insensitive
    assert world.find("Patient", ("family", "ANDERSS")) == ["ann"]
    assert world.find("Patient", ("family:exact", "Ändersen")) == ["bob"]
    assert world.find("Patient", ("family:exact", "andersen")) == []
    assert world.find("Patient", ("family", "castellanos-wainwright")) == ["cyd"]  # long prefix
    assert world.find("Patient", ("family", "castellanos-wainwright-smith")) == ["cyd"]
    assert world.find("Patient", ("family", "castellanos-wainwright-x")) == []
    assert world.find("Patient", ("name:contains", "ders")) == ["ann", "bob"]
    assert world.find("Patient", ("name:contains", "nn")) == ["ann", "dee"]  # short: opened
    assert world.find("Patient", ("address-city", "spring")) == ["ann", "bob", "cyd", "dee"]
    assert world.find("Patient", ("email:missing", "true")) == ["dee"]
    assert world.find("Patient", ("email:missing", "false")) == ["ann", "bob", "cyd"]
    assert world.find("Patient", ("phonetic", "Andersun")) == ["ann", "bob"]
    assert world.find("Organization", ("name", "good health")) == ["org"]


def test_token_forms_and_modifiers(world: World) -> None:
    assert world.find("Patient", ("gender", "female")) == ["ann", "dee"]
    assert world.find("Patient", ("gender:not", "female")) == ["bob", "cyd"]
    assert world.find("Patient", ("gender", "male,other")) == ["bob", "cyd"]
    assert world.find("Patient", ("identifier", f"{MRN}|A-1")) == ["ann"]
    assert world.find("Patient", ("identifier", "B-2")) == ["bob"]
    assert world.find("Patient", ("identifier", "|B-2")) == []
    assert world.find("Patient", ("identifier", f"{MRN}|")) == ["ann", "bob", "cyd", "dee"]
    assert world.find(
        "Patient",
        ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|C-3"),
    ) == ["cyd"]
    assert world.find("Patient", ("active", "true")) == ["ann", "bob", "cyd", "dee"]
    assert world.find("Patient", ("deceased", "true")) == ["dee"]
    assert world.find("Patient", ("_tag", "urn:tags|2")) == ["bob"]
    assert world.find("Observation", ("code", f"{LOINC}|8480-6")) == ["o1", "o2", "o4"]
    assert world.find("Observation", ("code:text", "code 846")) == ["o3"]
    assert world.find("Patient", ("_id", world.ids["ann"] + "," + world.ids["bob"])) == [
        "ann",
        "bob",
    ]
    with pytest.raises(HearthError) as exc:
        world.find("Observation", ("code:below", "8480"))
    assert exc.value.code is errors.UNSUPPORTED_MODIFIER


def test_dates_with_prefixes_and_precision(world: World) -> None:
    assert world.find("Patient", ("birthdate", "1970")) == ["ann"]
    assert world.find("Patient", ("birthdate", "1970-05")) == ["ann"]
    assert world.find("Patient", ("birthdate", "1970-05-12")) == ["ann"]
    assert world.find("Patient", ("birthdate", "1970-05-13")) == []
    assert world.find("Patient", ("birthdate", "ge1985")) == ["bob", "cyd"]
    assert world.find("Patient", ("birthdate", "gt1985")) == ["cyd"]
    assert world.find("Patient", ("birthdate", "lt1985-06")) == ["ann", "bob", "dee"]
    assert world.find("Patient", ("birthdate", "le1970-05-12")) == ["ann", "dee"]
    assert world.find("Patient", ("birthdate", "ne1970")) == ["bob", "cyd", "dee"]
    assert world.find("Patient", ("birthdate", "sa2001-11-15")) == []
    assert world.find("Patient", ("birthdate", "eb1931")) == ["dee"]
    assert world.find("Patient", ("death-date", "2020-02")) == ["dee"]
    # The +02:00 reading happened at 08:00 UTC on 1 June.
    assert world.find("Observation", ("date", "2021-06-01T08:00:00Z")) == ["o2"]
    assert world.find("Observation", ("date", "ge2021-03-01"), ("date", "le2021-03-31")) == [
        "o1",
        "o5",
    ]
    assert world.find("Observation", ("date", "eq2021-03")) == ["o1"]  # o5 runs into April
    assert world.find("Observation", ("date", "sa2021-02-28")) == ["o1", "o2", "o3", "o5"]
    assert world.find("Observation", ("date", "ap2021-03-16")) != []
    with pytest.raises(HearthError) as exc:
        world.find("Patient", ("birthdate", "1970-13"))
    assert exc.value.code is errors.BAD_SEARCH_VALUE
    assert "1970" not in exc.value.detail  # the message names the parameter, not the value


def test_quantities_numbers_and_composites(world: World) -> None:
    assert world.find("Observation", ("value-quantity", "120")) == ["o1"]
    assert world.find("Observation", ("value-quantity", "gt120")) == ["o2"]
    assert world.find("Observation", ("value-quantity", "ge120")) == ["o1", "o2"]
    assert world.find("Observation", ("value-quantity", "lt80")) == ["o5"]
    assert world.find("Observation", ("value-quantity", "le80|" + UCUM + "|mm[Hg]")) == ["o3"]
    assert world.find("Observation", ("value-quantity", "72.3||kg")) == ["o5"]
    assert world.find("Observation", ("value-quantity", "145.5")) == ["o2"]
    assert world.find("Observation", ("value-quantity", "145")) == []
    assert world.find("Observation", ("value-quantity", "ne120")) == ["o2", "o3", "o4", "o5"]
    assert world.find("Observation", ("value-quantity", "ap118")) == ["o1", "o4"]
    assert world.find("Observation", ("code-value-quantity", f"{LOINC}|8480-6$gt115")) == [
        "o1",
        "o2",
    ]
    assert world.find("Observation", ("combo-code-value-quantity", "8867-4$60")) == ["o5"]
    assert world.find("Observation", ("component-code", "8867-4")) == ["o5"]


def test_combo_parameters_search_their_parts(world: World) -> None:
    """Observation's combo-* parameters have no index rows of their own: each is searched as
    the union of the observation's own parameter and its component one (extract._unions)."""
    assert world.find("Observation", ("combo-code", "8867-4")) == ["o5"]  # a component's code
    assert world.find("Observation", ("combo-code", f"{LOINC}|29463-7")) == ["o5"]  # its own
    assert world.find("Observation", ("combo-code", "8462-4,8867-4")) == ["o3", "o5"]
    assert world.find("Observation", ("combo-code:not", "8480-6")) == ["o3", "o5"]
    assert world.find("Observation", ("combo-code:missing", "false")) == [
        "o1",
        "o2",
        "o3",
        "o4",
        "o5",
    ]
    assert world.find("Observation", ("combo-value-quantity", "60")) == ["o5"]  # component
    assert world.find("Observation", ("combo-value-quantity", "gt140")) == ["o2"]
    assert world.find("Observation", ("combo-value-quantity", "lt75")) == ["o5"]  # both
    assert world.find("Observation", ("combo-code-value-quantity", "8480-6$gt115")) == [
        "o1",
        "o2",
    ]
    # A code and a value must come from the same element: o5's own code with its
    # component's value is no match.
    assert world.find("Observation", ("combo-code-value-quantity", "29463-7$60")) == []
    assert world.find("Observation", ("combo-data-absent-reason:missing", "true")) == [
        "o1",
        "o2",
        "o3",
        "o4",
        "o5",
    ]
    assert world.find("Observation", ("combo-value-concept:missing", "false")) == []


def test_name_and_address_search_their_fields_parameters(world: World) -> None:
    """``name`` and ``address`` keep keys of their own only for the fields no other parameter
    indexes; ``family``, ``given``, ``address-city`` ... hold the rest (extract._element_unions).
    A search finds a value in any field, by every string modifier, and ``:missing`` sees them
    all."""
    repo = world.repo
    for key, resource in {
        "kai": {  # only fields of their own: text, prefix, suffix, line, district
            "resourceType": "Patient",
            "name": [{"text": "Kai Okafor", "prefix": ["Mx"], "suffix": ["MD"]}],
            "address": [{"line": ["Harbour Row 7"], "district": "Quayside"}],
        },
        "eve": {  # only fields their parts index: family, given, city, postal code
            "resourceType": "Patient",
            "name": [{"family": "Quill", "given": ["Eve"]}],
            "address": [{"city": "Harbourton", "postalCode": "90210"}],
        },
        "nil": {"resourceType": "Patient", "name": [{"use": "old"}], "gender": "unknown"},
    }.items():
        stored = repo.create(resource)
        world.ids[key], world.names[stored.res_id] = stored.res_id, key
    assert world.find("Patient", ("name", "kai")) == ["kai"]  # the text, its own
    assert world.find("Patient", ("name", "mx")) == ["kai"]  # a prefix
    assert world.find("Patient", ("name", "quill")) == ["eve"]  # the family, in family's keys
    assert world.find("Patient", ("name", "ev")) == ["eve"]  # a given name
    assert world.find("Patient", ("name:exact", "Quill")) == ["eve"]
    assert world.find("Patient", ("name:exact", "quill")) == []
    assert world.find("Patient", ("name:contains", "uil")) == ["eve"]
    assert world.find("Patient", ("name:contains", "afo")) == ["kai"]
    assert world.find("Patient", ("name:contains", "ndersso")) == ["ann"]  # a family's trigrams
    # AND by repetition: each value may match another field.
    assert world.find("Patient", ("name", "quill"), ("name", "eve")) == ["eve"]
    assert world.find("Patient", ("address", "harbour")) == ["eve", "kai"]  # city; line
    assert world.find("Patient", ("address", "quay")) == ["kai"]
    assert world.find("Patient", ("address", "90210")) == ["eve"]  # the postal code
    assert world.find("Patient", ("address:contains", "pringfiel")) == [
        "ann",
        "bob",
        "cyd",
        "dee",
    ]
    assert world.find("Patient", ("address-city", "harbour")) == ["eve"]  # not kai's line
    assert world.find("Patient", ("name:missing", "true")) == ["nil"]
    assert world.find("Patient", ("address:missing", "true")) == ["nil"]
    assert world.find("Patient", ("name:missing", "false"), ("gender", "unknown")) == []
    assert world.find("Patient", ("family:missing", "true")) == ["kai", "nil"]
    assert world.find("Practitioner", ("name", "gre")) == ["doc"]
    assert world.find("Observation", ("subject:Patient.name", "andersson")) == ["o1", "o2", "o3"]
    assert world.find("Observation", ("subject:Patient.name", "bob")) == ["o4", "o5"]  # given


def test_references_chains_has_and_compartment(world: World) -> None:
    ann, bob = world.ids["ann"], world.ids["bob"]
    assert world.find("Observation", ("subject", f"Patient/{ann}")) == ["o1", "o2", "o3"]
    assert world.find("Observation", ("subject:Patient", bob)) == ["o4", "o5"]
    assert world.find("Observation", ("patient", bob)) == ["o4", "o5"]
    assert world.find("Observation", ("subject", f"http://other.example/fhir/Patient/{bob}")) == []
    assert world.find("Observation", ("subject:Patient.name", "ander")) == [
        "o1",
        "o2",
        "o3",
        "o4",
        "o5",
    ]
    assert world.find("Observation", ("subject.family", "andersen")) == ["o4", "o5"]
    assert world.find("Observation", ("subject:Patient.birthdate", "lt1980")) == [
        "o1",
        "o2",
        "o3",
    ]
    assert world.find("Patient", ("_has:Observation:subject:code", "8462-4")) == ["ann"]
    assert world.find("Patient", ("_has:Observation:patient:value-quantity", "gt140")) == ["ann"]
    assert world.find("Patient", ("general-practitioner.identifier", "999")) == ["ann"]
    assert world.find("Observation", ("code", "8480-6"), compartment=bob) == ["o4"]
    assert world.find("Patient", ("organization:missing", "false")) == ["ann"]


def test_a_reference_has_a_value_by_its_row_or_by_its_key(world: World) -> None:
    """A literal reference (``Type/id``) says the parameter has a value by its row in
    ``search_reference``; a URL or an identifier alone, by a "has a value" key
    (index.index_resource, criteria._present). ``:missing`` sees both."""
    ann = world.ids["ann"]
    doc = world.ids["doc"]

    def observation(**extra: Any) -> dict[str, Any]:
        code = {"coding": [{"system": LOINC, "code": "9999-9"}]}
        return {"resourceType": "Observation", "status": "final", "code": code, **extra}

    for key, resource in {
        "lit": observation(
            subject={"reference": f"Patient/{ann}"},
            performer=[{"reference": f"Practitioner/{doc}"}],
        ),
        "url": observation(subject={"reference": "https://other.example/fhir/Patient/9"}),
        "ident": observation(subject={"identifier": {"system": "urn:ids", "value": "9"}}),
        "none": observation(),
        "mixed": observation(
            performer=[
                {"reference": f"Practitioner/{doc}"},
                {"reference": "https://other.example/fhir/Practitioner/7"},
            ]
        ),
    }.items():
        stored = world.repo.create(resource)
        world.ids[key], world.names[stored.res_id] = stored.res_id, key
    code = ("code", "9999-9")
    assert world.find("Observation", code, ("subject:missing", "false")) == ["ident", "lit", "url"]
    assert world.find("Observation", code, ("subject:missing", "true")) == ["mixed", "none"]
    assert world.find("Observation", code, ("performer:missing", "false")) == ["lit", "mixed"]
    assert world.find("Observation", code, ("performer:missing", "true")) == [
        "ident",
        "none",
        "url",
    ]
    # Beside a driver (a reference), each row the driver chose is probed.
    assert world.find(
        "Observation", ("subject", f"Patient/{ann}"), ("subject:missing", "false")
    ) == [
        "lit",
        "o1",
        "o2",
        "o3",
    ]
    assert world.find(
        "Observation", ("subject", f"Patient/{ann}"), ("performer:missing", "false")
    ) == ["lit"]
    assert world.find("Observation", ("subject:missing", "true")) == ["mixed", "none"]
    # Inside a chain and a _has, whose queries read search_reference themselves.
    assert world.find("Observation", ("subject:Patient.organization:missing", "false")) == [
        "lit",
        "o1",
        "o2",
        "o3",
    ]
    assert world.find("Observation", ("subject:Patient.organization:missing", "true")) == [
        "o4",
        "o5",
    ]
    assert world.find("Patient", ("_has:Observation:subject:performer:missing", "false")) == ["ann"]
    assert world.find("Patient", ("_has:Observation:patient:performer:missing", "true")) == [
        "ann",
        "bob",
    ]


def test_sort_count_paging_total_and_includes(world: World) -> None:
    page = world.page("Patient", ("_sort", "-birthdate"), ("_count", "2"))
    assert [world.names[s.res_id] for s in page.matches] == ["cyd", "bob"]
    assert page.total == 4
    assert page.more
    second = world.page("Patient", ("_sort", "-birthdate"), ("_count", "2"), offset=2)
    assert [world.names[s.res_id] for s in second.matches] == ["ann", "dee"]
    assert not second.more
    by_name = world.page("Patient", ("_sort", "family,-_lastUpdated"))
    assert [world.names[s.res_id] for s in by_name.matches] == ["bob", "ann", "cyd", "dee"]
    by_id = world.page("Patient", ("_sort", "-_id"))
    assert [s.res_id for s in by_id.matches] == sorted(
        (s.res_id for s in by_id.matches), reverse=True
    )
    included = world.page(
        "Observation",
        ("code", "8462-4"),
        ("_include", "Observation:subject"),
        ("_include:iterate", "Patient:general-practitioner"),
    )
    assert {world.names[s.res_id] for s in included.included} == {"ann", "doc"}
    rev = world.page("Patient", ("name", "bob"), ("_revinclude", "Observation:subject"))
    assert {world.names[s.res_id] for s in rev.included} == {"o4", "o5"}
    counted = world.page("Observation", ("_summary", "count"))
    assert counted.total == 5
    assert counted.matches == []
    no_total = world.page("Observation", ("_total", "none"))
    assert no_total.total is None
    assert len(no_total.matches) == 5


def test_updates_and_deletes_keep_the_index_current(world: World) -> None:
    repo = world.repo
    ann = repo.read("Patient", world.ids["ann"])
    assert ann.resource is not None
    renamed = {**ann.resource, "name": [{"family": "Zeta", "given": ["Ann"]}]}
    repo.update("Patient", ann.res_id, renamed)
    assert world.find("Patient", ("family", "andersson")) == []
    assert world.find("Patient", ("family", "zeta")) == ["ann"]
    repo.delete("Patient", ann.res_id)
    assert world.find("Patient", ("family", "zeta")) == []
    assert world.find("Patient", ("gender", "female")) == ["dee"]


def test_unknown_parameters_follow_prefer_handling(world: World) -> None:
    with pytest.raises(HearthError) as exc:
        world.find("Patient", ("nonsense", "x"), strict=True)
    assert exc.value.code is errors.UNKNOWN_SEARCH_PARAMETER
    request = parse_search(
        "Patient",
        [("nonsense", "x"), ("gender", "male")],
        ctx=Context(now_us=0),
        default_count=10,
        max_count=10,
        strict=False,
    )
    assert request.ignored == ("nonsense",)
    page = world.repo.search(request)
    assert [world.names[s.res_id] for s in page.matches] == ["bob"]


def test_past_the_bound_the_search_is_refused(instance: Instance) -> None:
    from hearth.storage import SearchBounds

    repo = instance.container.repository(admin())
    for i in range(6):
        repo.create({"resourceType": "Patient", "name": [{"family": f"Bound{i}"}]})
    tight = repository(instance.container, repo.principal, bounds=SearchBounds(open=3, include=3))
    request = parse_search(
        "Patient", [("name:contains", "ou")], ctx=Context(now_us=0), default_count=10, max_count=10
    )
    with pytest.raises(HearthError) as exc:
        tight.search(request)
    assert exc.value.code is errors.SEARCH_TOO_COSTLY
    exact = parse_search(
        "Patient", [("name", "bound")], ctx=Context(now_us=0), default_count=10, max_count=10
    )
    assert tight.search(exact).total == 6  # an exact index search opens nothing extra


def test_reindex_rebuilds_the_index_from_sealed_versions(instance: Instance) -> None:
    from sqlalchemy import text

    from hearth.services.search_admin import rebuild_search_index

    world = World(instance.container.repository(admin()))
    world.add("a", _patient("9", "Reindexed", "Ria", "1999-09-09", "female", "R-9"))
    gone = world.add("b", _patient("8", "Removed", "Rob", "1998", "male", "R-8"))
    world.repo.delete("Patient", gone)
    with instance.container.db.write.begin() as conn:
        for table in ("search_hash", "search_reference", "search_compartment", "search_resource"):
            conn.execute(text(f"DELETE FROM {table}"))
    assert world.find("Patient", ("family", "reindexed")) == []
    system = instance.container.system_repository("reindex")
    assert rebuild_search_index(system) == 1
    assert world.find("Patient", ("family", "reindexed")) == ["a"]
    assert world.find("Patient", ("birthdate", "1999-09-09")) == ["a"]
    assert world.find("Patient", ("family", "removed")) == []
