"""A clinician, a biller, a patient and a researcher each see exactly what their role allows,
through the FHIR API with an API token and through a SMART app's access token obtained on the
console (issue 5, "Done when")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import hearth.services.identity
import hearth.services.oauth.tokens
from hearth.services.oauth import ClientSpec
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.wiring import Container
from tests.access_world import LINKED, World, build_world
from tests.integration.auth.conftest import CHEAP, Browser, Instance, SeededRandom, build
from tests.oauth_support import authorize_on_console, exchange_code

FHIR = "https://localhost/fhir"
REDIRECT = "https://app.example/callback"


@dataclass
class Site:
    instance: Instance
    world: World
    app: str
    browsers: dict[str, Browser]

    def smart_token(self, username: str, scope: str, patient: str | None = None) -> str:
        """Sign in as ``username`` on the console and run the SMART authorization code flow."""
        browser = self.browsers[username]
        browser.sign_in(username)
        choose = {"patient": patient} if patient is not None else None
        answer, verifier, _ = authorize_on_console(
            browser, self.app, scope, redirect=REDIRECT, aud=FHIR, choose=choose
        )
        token: str = exchange_code(browser, self.app, answer, verifier, redirect=REDIRECT)[
            "access_token"
        ]
        return token

    def api_token(self, username: str) -> str:
        c = self.instance.container
        info = c.users.get(username)
        return c.authenticator.issue_token(
            subject=info.user_id, roles=info.roles, label="t", ttl=timedelta(days=7), by="test"
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    instance = build(tmp_path)
    try:
        world = build_world(instance.container)
        c = instance.container
        cli = c.system_principal("cli")
        browsers: dict[str, Browser] = {}
        for username, role in (
            ("clinician", "physician"),
            ("biller", "billing"),
            ("pat", "patient"),
            ("scientist", "researcher"),
        ):
            browser = instance.browser()
            browser.enrol_password(instance.add_user(username, frozenset({role})))
            browser.logout()
            browsers[username] = browser
        c.access.link_user(cli, "clinician", practitioner=world.ids["doc"], patient=None)
        c.access.link_user(cli, "pat", practitioner=None, patient=world.ids["careteam"])
        client, _ = c.clients.register(
            ClientSpec(
                name="Chart viewer",
                kind="app",
                auth_method="none",
                scope="launch/patient patient/*.rs user/*.rs openid",
                redirect_uris=(REDIRECT,),
            ),
            by="test",
        )
        yield Site(instance, world, client.client_id, browsers)
    finally:
        instance.container.close()


def fetch(http: TestClient, token: str, path: str, **kw: Any) -> Any:
    return http.get(f"/fhir/{path}", headers={"Authorization": f"Bearer {token}"}, **kw)


def searched(http: TestClient, token: str, res_type: str) -> tuple[int, set[str]]:
    response = http.post(
        f"/fhir/{res_type}/_search",
        data={"_count": "500"},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 200:
        return response.status_code, set()
    return 200, {e["resource"]["id"] for e in response.json().get("entry", [])}


def test_each_role_sees_what_it_may_through_the_api_and_a_smart_app(site: Site) -> None:
    world = site.world
    http = TestClient(create_app(site.instance.container), base_url="https://localhost")
    linked_patients = {world.ids[n] for n in LINKED}
    reachable_vitals = {
        world.obs[k] for n in LINKED if n != "consent_obs_only" for k in (n, f"{n}:R", f"{n}:lab")
    }
    stranger_obs = world.obs["stranger"]
    tokens = {
        "clinician": (
            site.api_token("clinician"),
            site.smart_token("clinician", "user/*.rs openid"),
        ),
        "biller": (site.api_token("biller"), site.smart_token("biller", "user/*.rs openid")),
        "pat": (
            site.api_token("pat"),
            site.smart_token("pat", "launch/patient patient/*.rs openid", world.ids["careteam"]),
        ),
        "scientist": (
            site.api_token("scientist"),
            site.smart_token("scientist", "user/*.rs openid"),
        ),
    }
    for how, index in (("API token", 0), ("SMART token", 1)):
        # The clinician: the patients linked by care relationships, never a stranger.
        doc = tokens["clinician"][index]
        status, patients = searched(http, doc, "Patient")
        assert (status, patients) == (200, linked_patients), how
        status, observations = searched(http, doc, "Observation")
        assert observations == reachable_vitals, how
        assert fetch(http, doc, f"Observation/{stranger_obs}").status_code == 404, how
        condition = fetch(http, doc, f"Condition/{world.ids['condition']}").json()
        assert condition["note"], how

        # The biller: every patient's demographics and coded conditions, no notes or text,
        # no clinical observations.
        bill = tokens["biller"][index]
        status, patients = searched(http, bill, "Patient")
        assert status == 200
        assert len(patients) == len(LINKED) + 6, how  # every patient
        condition = fetch(http, bill, f"Condition/{world.ids['condition']}").json()
        assert "note" not in condition, how
        assert "text" not in condition, how
        assert condition["meta"]["security"][0]["code"] == "REDACTED", how
        assert searched(http, bill, "Observation")[0] == 403, how

        # The patient: their own record only, very restricted entries included.
        me = tokens["pat"][index]
        status, patients = searched(http, me, "Patient")
        assert patients == {world.ids["careteam"]}, how
        status, observations = searched(http, me, "Observation")
        own = {world.obs[f"careteam{s}"] for s in ("", ":R", ":V", ":HIV", ":lab")}
        assert observations == own, how
        assert fetch(http, me, f"Observation/{stranger_obs}").status_code == 404, how

        # The researcher: every patient, de-identified (pseudonyms, no names), no restricted
        # record; searching by codes, never by name, and reading no single record.
        sci = tokens["scientist"][index]
        status, patients = searched(http, sci, "Patient")
        assert status == 200, how
        assert len(patients) == len(LINKED) + 6, how
        assert not patients & set(world.ids.values()), how  # pseudonyms, not ids
        status, observations = searched(http, sci, "Observation")
        unlabelled = {k for k in world.obs if ":" not in k or k.endswith(":lab")}
        assert len(observations) == len(unlabelled), how
        assert not observations & set(world.obs.values()), how
        answer = http.post(
            "/fhir/Patient/_search",
            data={"family": "Famcareteam"},
            headers={"Authorization": f"Bearer {sci}"},
        )
        assert answer.status_code == 403, how
        assert answer.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-1112", how
        assert "Famcareteam" not in answer.text, how
        whole = http.post(
            "/fhir/Patient/_search", data={}, headers={"Authorization": f"Bearer {sci}"}
        ).text
        assert "Fam" not in whole, how
        assert fetch(http, sci, f"Patient/{world.ids['careteam']}").status_code == 403, how


class _Ticks:
    """``time`` for the token caches, moved on by hand (the caches count monotonic seconds)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def test_a_role_change_applies_to_existing_api_tokens_as_to_smart_tokens(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A physician made front-desk: the API token issued while they were a physician acts as
    front-desk, like their SMART app's token, at once in the process that made the change and
    within the token caches' 5 s in another server process (it kept the physician's view for
    its whole week)."""
    ticks = _Ticks()
    monkeypatch.setattr(hearth.services.identity, "time", ticks)
    monkeypatch.setattr(hearth.services.oauth.tokens, "time", ticks)
    c = site.instance.container
    other = Container(  # another server process on the same database
        load_settings(site.instance.home, {}),
        clock=site.instance.clock,
        random=SeededRandom(b"other process"),
        password_parameters=CHEAP,
    )
    try:
        here = TestClient(create_app(c), base_url="https://localhost")
        there = TestClient(create_app(other), base_url="https://localhost")
        tokens = (site.api_token("clinician"), site.smart_token("clinician", "user/*.rs openid"))
        linked = {site.world.ids[n] for n in LINKED}
        for http in (here, there):
            for token in tokens:
                assert searched(http, token, "Observation")[0] == 200
                assert searched(http, token, "Patient") == (200, linked)

        c.users.set_roles("clinician", frozenset({"front-desk"}), by="test")

        # Front-desk: no clinical observations, and every patient's demographics.
        for token in tokens:
            assert searched(here, token, "Observation")[0] == 403
            assert searched(here, token, "Patient")[1] > linked
        ticks.offset += 5.1  # past both caches of the other process
        for token in tokens:
            assert searched(there, token, "Observation")[0] == 403
            assert searched(there, token, "Patient")[1] > linked
    finally:
        other.close()


def test_an_api_token_stops_with_its_user(site: Site) -> None:
    """A token whose user is disabled or no longer exists acts as nobody (fail closed), even
    before the revocation that disabling performs."""
    c = site.instance.container
    http = TestClient(create_app(c), base_url="https://localhost")
    orphan = c.authenticator.issue_token(
        subject="usr_nosuchuser0000000000",
        roles=frozenset({"bootstrap-admin"}),
        label="t",
        ttl=timedelta(hours=1),
        by="test",
    )
    assert fetch(http, orphan, "Patient").status_code == 401
    token = site.api_token("biller")
    assert fetch(http, token, "Patient").status_code == 200
    c.accounts.update_user(  # disabled without the revocation ``hearth user disable`` adds
        c.users.get("biller").user_id, 0, [], status="disabled"
    )
    c.authenticator.forget_subject(c.users.get("biller").user_id)
    assert fetch(http, token, "Patient").status_code == 401
