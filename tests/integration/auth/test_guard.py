"""The session interface other web modules build on (hearth.web.auth): require_user with and
without step-up, the cross-site bounce, next-URL safety and the relying party."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hearth.services.signin import relying_party, safe_next
from hearth.settings import AuthSettings
from hearth.web.app import create_app
from hearth.web.auth import current_user, require_user
from tests.integration.auth.conftest import Browser, Instance


async def sensitive(request: Request) -> Response:
    signed_in = await require_user(request, step_up=True)
    return PlainTextResponse(f"export for {signed_in.principal.subject}")


async def whoami(request: Request) -> Response:
    principal = await current_user(request)
    return PlainTextResponse(principal.subject if principal else "nobody")


def probe_browser(site: Instance) -> Browser:
    app = create_app(site.container)
    app.router.routes[:0] = [
        Route("/probe/export", sensitive, methods=["GET"]),
        Route("/probe/whoami", whoami, methods=["GET"]),
    ]
    return Browser(TestClient(app, base_url="https://localhost"), site.clock)


def test_require_user_and_step_up(site: Instance) -> None:
    browser = probe_browser(site)
    assert browser.get("/probe/whoami").text == "nobody"
    anonymous = browser.get("/probe/export?fmt=ndjson")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/probe/export%3Ffmt%3Dndjson"
    browser.enrol_password(site.add_user("alice"))
    user_id = site.container.users.get("alice").user_id
    assert browser.get("/probe/whoami").text == user_id
    assert browser.get("/probe/export").text == f"export for {user_id}"  # sign-in counts
    site.clock.advance(minutes=6)
    stale = browser.get("/probe/export")
    assert stale.headers["location"] == "/step-up?next=/probe/export"
    browser.get("/step-up?next=/probe/export")
    site.clock.advance(seconds=30)
    done = browser.post("/step-up/totp", {"code": browser.code(), "next": "/probe/export"})
    assert done.headers["location"] == "/probe/export"
    assert browser.get("/probe/export").status_code == 200
    site.clock.advance(minutes=20)
    assert browser.get("/probe/export").headers["location"] == "/unlock?next=/probe/export"


def test_a_cross_site_navigation_is_bounced_once_through_this_site(site: Instance) -> None:
    browser = probe_browser(site)
    response = browser.get("/probe/export?x=1", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert '<meta http-equiv="refresh" content="0;url=/probe/export?x=1">' in response.text
    same_site = browser.get("/probe/export?x=1", headers={"Sec-Fetch-Site": "same-origin"})
    assert same_site.status_code == 303
    assert same_site.headers["location"].startswith("/login?next=")


def test_next_urls_stay_on_this_site() -> None:
    assert safe_next("/account?tab=keys") == "/account?tab=keys"
    for bad in (None, "", "account", "//evil", "/\\evil", "https://evil/", "/a\r\nb", "/" * 3000):
        assert safe_next(bad) == "/"
    assert safe_next("javascript:alert(1)") == "/"


def test_the_relying_party_follows_settings_then_the_public_url_then_the_request() -> None:
    configured = relying_party(
        AuthSettings(rp_id="ehr.example.org", origins=("https://ehr.example.org",)),
        None,
        "http://localhost:8080",
    )
    assert (configured.rp_id, configured.origins) == (
        "ehr.example.org",
        ("https://ehr.example.org",),
    )
    public = relying_party(AuthSettings(), "https://ehr.example.org/fhir", "http://x")
    assert (public.rp_id, public.origins) == ("ehr.example.org", ("https://ehr.example.org",))
    local = relying_party(AuthSettings(), None, "http://localhost:8123")
    assert (local.rp_id, local.origins) == ("localhost", ("http://localhost:8123",))
    only_id = relying_party(
        AuthSettings(rp_id="ehr.example.org"), "https://ehr.example.org/fhir", "http://x"
    )
    assert only_id.origins == ("https://ehr.example.org",)
