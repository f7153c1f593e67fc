"""fhirpy and fhirclient searches against a real server: paging, includes, chains (R4 search.html).

Each search is checked against a brute-force filter over every resource the test wrote, on every
engine under test.
"""

from __future__ import annotations

from typing import Any

from fhirclient import client as fhirclient_client
from fhirclient.models.observation import Observation as FcObservation
from fhirclient.models.patient import Patient as FcPatient
from fhirpy import SyncFHIRClient

from tests.integration.conftest import LiveServer

FAMILIES = ["Okafor", "Okonkwo", "Olsen", "Ortiz", "Osei", "Owusu", "Oyelaran"]


def seed(client: SyncFHIRClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    patients, observations = [], []
    for i in range(21):
        patient = client.resource(
            "Patient",
            name=[{"family": FAMILIES[i % len(FAMILIES)], "given": [f"G{i}"]}],
            gender="female" if i % 2 else "male",
            birthDate=f"{1950 + i}-06-15",
        )
        patient.save()
        patients.append(dict(patient))
        for j in range(2):
            obs = client.resource(
                "Observation",
                status="final",
                code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                subject={"reference": f"Patient/{patient.id}"},
                effectiveDateTime=f"2021-0{1 + j}-1{i % 10}",
                valueQuantity={"value": 50 + i + j},
            )
            obs.save()
            observations.append(dict(obs))
    return patients, observations


def test_fhirpy_paging_includes_and_chains(engine_live_server: LiveServer) -> None:
    live_server = engine_live_server
    client = SyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
    patients, observations = seed(client)

    found = client.resources("Patient").search(family="O").limit(4).fetch_all()
    assert len(found) == 21  # fetch_all follows the opaque next links page by page
    assert {p.id for p in found} == {p["id"] for p in patients}

    older = client.resources("Patient").search(birthdate__lt="1960-01-01", gender="female")
    expected = {
        p["id"] for p in patients if p["birthDate"] < "1960-01-01" and p["gender"] == "female"
    }
    assert {p.id for p in older.fetch_all()} == expected

    ortiz = {p["id"] for p in patients if p["name"][0]["family"] == "Ortiz"}
    chained = client.resources("Observation").search(**{"subject:Patient.family": "ortiz"})
    assert {o["subject"]["reference"].split("/")[1] for o in chained.fetch_all()} == ortiz
    assert len(chained.fetch_all()) == 2 * len(ortiz)

    bundle = (
        client.resources("Observation")
        .search(**{"value-quantity": "ge70"})
        .include("Observation", "subject")
        .limit(100)
        .fetch_raw()
    )
    matches = [e["resource"] for e in bundle.entry if e["search"]["mode"] == "match"]
    included = {e["resource"]["id"] for e in bundle.entry if e["search"]["mode"] == "include"}
    expected_obs = [o for o in observations if o["valueQuantity"]["value"] >= 70]
    assert {o["id"] for o in matches} == {o["id"] for o in expected_obs}
    assert included == {o["subject"]["reference"].split("/")[1] for o in expected_obs}

    has = client.resources("Patient").search(**{"_has:Observation:subject:value-quantity": "gt70"})
    assert {p.id for p in has.fetch_all()} == {
        o["subject"]["reference"].split("/")[1]
        for o in observations
        if o["valueQuantity"]["value"] > 70
    }


def test_fhirclient_search_with_paging_includes_and_chains(engine_live_server: LiveServer) -> None:
    live_server = engine_live_server
    pyclient = SyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
    patients, observations = seed(pyclient)
    smart = fhirclient_client.FHIRClient(
        settings={"app_id": "hearth-tests", "api_base": live_server.base_url + "/"}
    )
    smart.server.auth = None
    smart.server.session.headers["Authorization"] = f"Bearer {live_server.token}"

    search = FcPatient.where(struct={"family": "Os", "_count": "2"})
    pages = list(search.perform_iter(smart.server))  # follows the opaque next links
    assert len(pages) > 1
    seen = [e.resource.id for bundle in pages for e in bundle.entry or []]
    expected = {p["id"] for p in patients if p["name"][0]["family"].startswith("Os")}
    assert set(seen) == expected
    assert len(seen) == len(expected)

    chained = list(
        FcObservation.where(struct={"subject:Patient.birthdate": "ge1965"}).perform_resources_iter(
            smart.server
        )
    )
    young = {p["id"] for p in patients if p["birthDate"] >= "1965"}
    assert {o.id for o in chained} == {
        o["id"] for o in observations if o["subject"]["reference"].split("/")[1] in young
    }

    # Includes across pages: each page carries the subjects of its own matches.
    paged = FcObservation.where(
        struct={"value-quantity": "gt60", "subject:Patient.gender": "female", "_count": "5"}
    ).include("subject")
    pages = list(paged.perform_iter(smart.server))
    assert len(pages) > 1
    matched: list[str] = []
    for page in pages:
        entries = page.entry or []
        mine = [e.resource for e in entries if e.search.mode == "match"]
        included = {e.resource.id for e in entries if e.search.mode == "include"}
        assert included == {o.subject.reference.split("/")[1] for o in mine}
        matched += [o.id for o in mine]
    female = {p["id"] for p in patients if p["gender"] == "female"}
    expected = {
        o["id"]
        for o in observations
        if o["valueQuantity"]["value"] > 60 and o["subject"]["reference"].split("/")[1] in female
    }
    assert sorted(matched) == sorted(expected)  # every match once, none twice

    reverse = FcPatient.where(struct={"family": "Ok"}).include(
        "subject", FcObservation, reverse=True
    )
    ok = {p["id"] for p in patients if p["name"][0]["family"].startswith("Ok")}
    modes: dict[str, set[str]] = {"match": set(), "include": set()}
    for page in reverse.perform_iter(smart.server):
        for entry in page.entry or []:
            modes[entry.search.mode].add(entry.resource.id)
    assert modes["match"] == ok
    assert modes["include"] == {
        o["id"] for o in observations if o["subject"]["reference"].split("/")[1] in ok
    }
