"""The access log prints only path segments it recognises."""

from __future__ import annotations

import pytest
from starlette.routing import Mount, Route

from hearth.web.logpath import app_literals, loggable_path, route_literals

LITERALS = route_literals(
    [
        Route("/login", lambda r: None),
        Route("/api/alarms/{alarm_id}", lambda r: None),
        Mount("/oauth", routes=[Route("/token", lambda r: None)]),
    ]
)


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/fhir/metadata", "/fhir/metadata"),
        ("/fhir", "/fhir"),
        ("/fhir/", "/fhir/"),
        ("/fhir/Patient", "/fhir/Patient"),
        ("/fhir/Patient/123", "/fhir/Patient/:id"),
        ("/fhir/Patient/123/_history/2", "/fhir/Patient/:id/_history/:vid"),
        ("/fhir/Patient/_history", "/fhir/Patient/_history"),
        ("/fhir/_history", "/fhir/_history"),
        ("/fhir/Patient/_search", "/fhir/Patient/_search"),
        ("/fhir/Patient/123/$everything", "/fhir/Patient/:id/$everything"),
        ("/fhir/Patient/123/Observation", "/fhir/Patient/:id/Observation"),
        ("/fhir/Plantedname-Smith", "/fhir/:x"),
        ("/fhir/Patient/123/Smith", "/fhir/Patient/:id/:x"),
        ("/fhir/Patient/$Smith", "/fhir/Patient/:id"),
        ("/fhir/_history/Smith", "/fhir/_history/:x"),
        ("/fhir/Patient/_history/Smith", "/fhir/Patient/_history/:x"),
        ("/fhir/metadata/Smith/Jones", "/fhir/metadata/:x/:x"),
        ("/login", "/login"),
        ("/login/Smith", "/login/:x"),
        ("/api/alarms/0123abcd", "/api/alarms/:x"),
        ("/oauth/token", "/oauth/token"),
        ("/Plantedname", "/:x"),
        ("", ""),
    ],
)
def test_only_known_segments_are_logged(path: str, logged: str) -> None:
    assert loggable_path(path, LITERALS) == logged


def test_literals_come_from_the_routes_once_per_app() -> None:
    assert {"login", "api", "alarms", "oauth", "token"} == LITERALS

    class App:
        routes = (Route("/x/{y}", lambda r: None),)

    app = App()
    assert app_literals(app) == {"x"}
    assert app_literals(app) is app_literals(app)
    assert app_literals(None) == frozenset()
