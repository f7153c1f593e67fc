"""PKCE, S256 only (RFC 7636; SMART-PK-01, ASVS 10.4.6)."""

from __future__ import annotations

import pytest

from hearth.auth.oauth.pkce import s256_challenge, validate_code_challenge, verify_code_verifier
from hearth.domain import HearthError, errors

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert s256_challenge(VERIFIER) == CHALLENGE
    verify_code_verifier(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("method", [None, "plain", "s256", "S512"])
def test_only_s256_is_accepted(method: str | None) -> None:
    with pytest.raises(HearthError) as refused:
        validate_code_challenge(CHALLENGE, method)
    assert refused.value.code is errors.OAUTH_INVALID_REQUEST


@pytest.mark.parametrize("challenge", [None, "", "short", CHALLENGE + "x", CHALLENGE[:-1] + "="])
def test_malformed_challenge(challenge: str | None) -> None:
    with pytest.raises(HearthError):
        validate_code_challenge(challenge, "S256")


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "a" * 42,
        "a" * 129,
        VERIFIER[:-1] + "B",
        VERIFIER + " ",
        VERIFIER.replace("-", "+"),
    ],
)
def test_wrong_or_malformed_verifier(verifier: str | None) -> None:
    with pytest.raises(HearthError) as refused:
        verify_code_verifier(verifier, CHALLENGE)
    assert refused.value.code is errors.INVALID_GRANT
