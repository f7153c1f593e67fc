"""Requested and granted scopes (RFC 6749 sec. 3.3; SMART-SC-03, SC-05, BS-08)."""

from __future__ import annotations

import pytest

from hearth.auth.oauth.scopes import ScopeRequest, grant_scopes, requested_all
from hearth.domain import HearthError, errors


def granted(requested: str, allowed: str) -> str:
    return grant_scopes(ScopeRequest.parse(requested), ScopeRequest.parse(allowed)).text()


def test_parse_classifies() -> None:
    request = ScopeRequest.parse("openid fhirUser launch/patient patient/*.rs offline_access")
    assert request.other == {"openid", "fhirUser", "launch/patient", "offline_access"}
    assert [t for t, _ in request.resource] == ["patient/*.rs"]


@pytest.mark.parametrize("text", [None, "", "   ", "admin", "patient/*.xyz", "launch/anything"])
def test_unknown_or_malformed_scopes_are_refused(text: str | None) -> None:
    with pytest.raises(HearthError) as refused:
        ScopeRequest.parse(text)
    assert refused.value.code is errors.INVALID_SCOPE


def test_grant_is_within_what_is_allowed() -> None:
    assert granted("system/*.rs", "system/Observation.cruds system/Patient.r") == (
        "system/Observation.rs system/Patient.r"
    )
    assert granted("system/Observation.cruds", "system/*.rs") == "system/Observation.rs"
    assert granted("user/Observation.rs", "patient/*.rs") == ""
    assert granted("patient/*.rs openid offline_access", "patient/*.rs openid") == (
        "openid patient/*.rs"
    )


def test_v1_scopes_granted_whole_are_echoed_as_v1() -> None:
    assert granted("patient/*.read", "patient/*.cruds") == "patient/*.read"
    assert granted("patient/*.read", "patient/Observation.r") == "patient/Observation.r"


def test_requested_all() -> None:
    request = ScopeRequest.parse("system/Observation.rs system/Patient.rs")
    partly = grant_scopes(request, ScopeRequest.parse("system/Observation.rs"))
    fully = grant_scopes(request, ScopeRequest.parse("system/*.rs"))
    assert not requested_all(request, partly)
    assert requested_all(request, fully)


def test_discovery_lists_the_identity_scopes_and_only_scopes_that_parse() -> None:
    from hearth.auth.oauth.discovery import Endpoints, smart_configuration

    listed = smart_configuration(Endpoints("http://127.0.0.1:8080/fhir"))["scopes_supported"]
    assert {"openid", "fhirUser", "profile"} <= set(listed)
    for scope in listed:
        ScopeRequest.parse(scope)  # every advertised scope is one a client may ask for
