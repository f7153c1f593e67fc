"""The authorization request, checked before the user is asked (RFC 6749 sec. 4.1.1, 4.1.2.1;
SMART-PK-01..04)."""

from __future__ import annotations

import pytest

from hearth.auth.oauth.authorization import (
    ApprovedRequest,
    validate_authorization_request,
    validate_redirect,
)
from hearth.auth.oauth.scopes import ScopeRequest, describe
from hearth.domain import HearthError, errors

BASE = "https://h.example/fhir"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def params(**changes: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": "https://app.example/cb",
        "scope": "launch/patient patient/*.rs",
        "state": "0123456789abcdefXYZ",
        "aud": BASE,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }
    return {k: v for k, v in base.items() if v is not None}


def test_valid_request() -> None:
    request = validate_authorization_request(
        params(), redirect_uri="https://app.example/cb", fhir_base=BASE
    )
    assert request.code_challenge == CHALLENGE
    assert request.launch is None
    assert request.break_glass is None
    named = params(hearth_break_glass="btg_" + "a" * 24)
    carried = validate_authorization_request(named, redirect_uri="x", fhir_base=BASE)
    assert carried.break_glass == "btg_" + "a" * 24


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"response_type": "token"}, errors.UNSUPPORTED_RESPONSE_TYPE),
        ({"state": None}, errors.OAUTH_INVALID_REQUEST),
        ({"state": "short"}, errors.OAUTH_INVALID_REQUEST),
        ({"aud": "https://h.example/fhir/"}, errors.OAUTH_INVALID_REQUEST),
        ({"aud": None}, errors.OAUTH_INVALID_REQUEST),
        ({"code_challenge_method": "plain"}, errors.OAUTH_INVALID_REQUEST),
        ({"scope": None}, errors.INVALID_SCOPE),
        ({"launch": "abc"}, errors.INVALID_SCOPE),
        ({"scope": "launch patient/*.rs"}, errors.OAUTH_INVALID_REQUEST),
        ({"nonce": "n" * 600}, errors.OAUTH_INVALID_REQUEST),
        ({"hearth_break_glass": "btg_" + "a" * 61}, errors.BREAK_GLASS_NOT_ACTIVE),
    ],
)
def test_refusals(changes: dict[str, str | None], code: object) -> None:
    with pytest.raises(HearthError) as refused:
        validate_authorization_request(params(**changes), redirect_uri="x", fhir_base=BASE)
    assert refused.value.code is code


def test_redirect_uri_exact_match() -> None:
    registered = ("https://app.example/cb",)
    assert validate_redirect(params(), registered_redirects=registered) == "https://app.example/cb"
    assert validate_redirect(params(redirect_uri=None), registered_redirects=registered) == (
        "https://app.example/cb"
    )
    for uri in ("https://app.example/cb/", "https://app.example/cb?x=1", "https://APP.example/cb"):
        with pytest.raises(HearthError) as refused:
            validate_redirect(params(redirect_uri=uri), registered_redirects=registered)
        assert refused.value.code is errors.INVALID_REDIRECT
    with pytest.raises(HearthError):
        validate_redirect(params(redirect_uri=None), registered_redirects=("a", "b"))
    with pytest.raises(HearthError):
        validate_redirect(params(), registered_redirects=None)


def test_approved_request_round_trip() -> None:
    approved = ApprovedRequest(
        client_id="app",
        redirect_uri="https://app.example/cb",
        code_challenge=CHALLENGE,
        subject="u1",
        roles=("clinician",),
        scope="patient/*.rs",
        patient="p1",
        nonce="n",
        auth_time=1,
        break_glass="btg_" + "a" * 24,
    )
    assert ApprovedRequest.from_json(approved.to_json()) == approved
    # A code stored before the field existed still reads, without a grant.
    older = approved.to_json().replace(',"break_glass":"btg_' + "a" * 24 + '"', "")
    assert "break_glass" not in older
    assert ApprovedRequest.from_json(older).break_glass is None


def test_consent_sentences_spell_out_wildcards() -> None:
    lines = describe(
        ScopeRequest.parse("patient/*.rs user/Observation.r?category=laboratory offline_access")
    )
    assert lines[0] == (
        "Read and search every kind of record, including kinds Hearth adds in future, "
        "of the selected patient only."
    )
    expected = "Read Observation records that you yourself may see (only those with category "
    assert lines[1] == expected + "laboratory)."
    assert lines[2].startswith("Keep this access after you sign out")
