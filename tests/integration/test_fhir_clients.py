"""The reference FHIR clients, fhirpy and fhirclient, against a real Hearth server on loopback."""

from __future__ import annotations

import asyncio

from fhirclient import client as fhirclient_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient as FcPatient
from fhirpy import AsyncFHIRClient, SyncFHIRClient

from tests.integration.conftest import LiveServer


def test_fhirpy_create_read_update_delete_history(live_server: LiveServer) -> None:
    client = SyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
    patient = client.resource("Patient", name=[{"family": "Fhirpy", "given": ["Ada"]}])
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == "Fhirpy"

    fetched["active"] = True
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"

    history = client.resource("Patient", id=patient.id)
    bundle = client.execute(f"Patient/{patient.id}/_history", method="get")
    assert bundle["type"] == "history"
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"2"', 'W/"1"']

    history.delete()
    again = client.execute(f"Patient/{patient.id}/_history", method="get")
    assert again["entry"][0]["request"]["method"] == "DELETE"


def test_fhirpy_async_client(live_server: LiveServer) -> None:
    async def run() -> str:
        client = AsyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
        patient = client.resource("Patient", name=[{"family": "Async"}])
        await patient.save()
        fetched = await client.reference("Patient", patient.id).to_resource()
        return str(fetched["name"][0]["family"])

    assert asyncio.run(run()) == "Async"


def test_fhirclient_create_read_update_delete(live_server: LiveServer) -> None:
    smart = fhirclient_client.FHIRClient(
        settings={"app_id": "hearth-tests", "api_base": live_server.base_url}
    )
    # fhirclient sends whatever authorization header its server object holds.
    smart.server.auth = None
    smart.server.session.headers["Authorization"] = f"Bearer {live_server.token}"

    patient = FcPatient()
    name = HumanName()
    name.family = "Fhirclient"
    name.given = ["Grace"]
    patient.name = [name]
    created = patient.create(smart.server)
    assert created is not None
    patient_id = created["id"]

    read = FcPatient.read(patient_id, smart.server)
    assert read.name[0].family == "Fhirclient"

    read.active = True
    updated = read.update(smart.server)
    assert updated is not None
    assert updated["meta"]["versionId"] == "2"

    history = smart.server.request_json(f"Patient/{patient_id}/_history")
    assert history["total"] == 2

    read.delete(smart.server)
    history = smart.server.request_json(f"Patient/{patient_id}/_history")
    assert history["entry"][0]["request"]["method"] == "DELETE"


def test_fhirpy_patch(live_server: LiveServer) -> None:
    client = SyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
    patient = client.resource("Patient", name=[{"family": "Patchy"}], active=True)
    patient.save()
    patched = client.patch("Patient", patient.id, active=False)
    assert patched["active"] is False
    assert patched["meta"]["versionId"] == "2"


def test_fhirpy_conditional_create_and_empty_searches(live_server: LiveServer) -> None:
    """fhirpy's conditional create sends its condition in the query of the POST; an empty
    searchset has no ``entry`` (FHIR JSON has no empty arrays), which fhirpy reads as none."""
    client = SyncFHIRClient(live_server.base_url, authorization=f"Bearer {live_server.token}")
    ident = {"system": "urn:example:mrn", "value": "FP-1"}
    first = client.resource("Patient", identifier=[ident], name=[{"family": "Once"}])
    first.create(identifier="urn:example:mrn|FP-1")
    second = client.resource("Patient", identifier=[ident], name=[{"family": "Once"}])
    second.create(identifier="urn:example:mrn|FP-1")
    assert second.id == first.id
    found, created = (
        client.resources("Patient")
        .search(identifier="urn:example:mrn|FP-1")
        .get_or_create(client.resource("Patient", identifier=[ident]))
    )
    assert (found.id, created) == (first.id, False)
    patients = client.resources("Patient").search(identifier="urn:example:mrn|FP-1")
    assert patients.count() == 1
    nobody = client.resources("Patient").search(identifier="urn:example:mrn|nobody")
    assert nobody.fetch_all() == []
    assert nobody.count() == 0
    assert nobody.first() is None
