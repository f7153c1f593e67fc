"""``private_key_jwt`` client assertions (RFC 7523 sec. 3; SMART-BS-03..07)."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from tests.oauth_support import ClientKey, assertion

from hearth.auth.oauth.assertion import validate_client_assertion, validate_jwks
from hearth.domain import HearthError, errors

TOKEN_URL = "https://h.example/oauth/token"
NOW = 1_800_000_000
CLIENT = "svc1"


@pytest.fixture(scope="module", params=["ES384", "RS384"])
def key(request: pytest.FixtureRequest) -> ClientKey:
    return ClientKey.generate(request.param)


def check(token: str, jwks: dict[str, Any], *, jku: str | None = None) -> None:
    validate_client_assertion(
        token, client_id=CLIENT, jwks=jwks, token_url=TOKEN_URL, now=NOW, registered_jku=jku
    )


def refused(token: str, jwks: dict[str, Any], *, jku: str | None = None) -> None:
    with pytest.raises(HearthError) as error:
        check(token, jwks, jku=jku)
    assert error.value.code is errors.INVALID_CLIENT
    assert error.value.detail == "The client assertion is not valid."


def make(key: ClientKey, **kw: Any) -> str:
    return assertion(key, client_id=CLIENT, token_url=TOKEN_URL, now=NOW, **kw)


def test_valid(key: ClientKey) -> None:
    verified = validate_client_assertion(
        make(key, jti="j1"),
        client_id=CLIENT,
        jwks=key.jwks(),
        token_url=TOKEN_URL,
        now=NOW,
        registered_jku=None,
    )
    assert (verified.client_id, verified.jti, verified.expires_at) == (CLIENT, "j1", NOW + 240)


def test_wrong_key(key: ClientKey) -> None:
    other = ClientKey.generate(key.alg)
    other.kid = key.kid  # same kid, different key material
    refused(make(other), key.jwks())


def test_unknown_kid_and_ambiguous_kid(key: ClientKey) -> None:
    stranger = ClientKey.generate(key.alg)
    refused(make(stranger), key.jwks())
    twin = ClientKey.generate(key.alg)
    twin.kid = key.kid
    refused(make(key), {"keys": [key.public_jwk(), twin.public_jwk()]})  # two matches fail


def test_wrong_audience(key: ClientKey) -> None:
    refused(make(key, claims={"aud": "https://other.example/oauth/token"}), key.jwks())
    refused(make(key, claims={"aud": "https://h.example/fhir"}), key.jwks())


def test_audience_list_is_accepted(key: ClientKey) -> None:
    check(make(key, claims={"aud": [TOKEN_URL, "x"]}), key.jwks())


def test_expired_and_too_long(key: ClientKey) -> None:
    refused(make(key, lifetime=0), key.jwks())
    refused(make(key, lifetime=-10), key.jwks())
    refused(make(key, lifetime=3600), key.jwks())  # exp more than five minutes ahead
    check(make(key, lifetime=300), key.jwks())


def test_issuer_subject_and_jti(key: ClientKey) -> None:
    refused(make(key, claims={"sub": "someone-else"}), key.jwks())
    refused(make(key, claims={"iss": "someone-else"}), key.jwks())
    refused(make(key, claims={"jti": ""}), key.jwks())
    refused(make(key, claims={"jti": 12}), key.jwks())
    refused(make(key, claims={"nbf": NOW + 3600}), key.jwks())
    refused(make(key, claims={"iat": NOW + 3600}), key.jwks())


def test_jku_must_be_the_registered_url(key: ClientKey) -> None:
    registered = "https://svc.example/jwks.json"
    check(make(key, header={"jku": registered}), key.jwks(), jku=registered)
    refused(make(key, header={"jku": "https://evil.example/jwks.json"}), key.jwks(), jku=registered)
    refused(make(key, header={"jku": registered}), key.jwks(), jku=None)


def test_algorithms_outside_the_allowlist(key: ClientKey) -> None:
    es256 = ClientKey.generate("ES256")
    refused(make(es256), es256.jwks())
    hmac = jwt.encode(
        {"alg": "HS384", "kid": key.kid},
        {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": NOW + 60, "jti": "x"},
        OctKey.generate_key(384),
        algorithms=["HS384"],
    )
    refused(hmac, key.jwks())


def test_alg_and_key_type_must_agree() -> None:
    ec = ClientKey.generate("ES384")
    rsa = ClientKey.generate("RS384")
    rsa.kid = ec.kid
    # An RS384 assertion whose kid names only an EC key finds no key of the right type.
    refused(make(rsa), ec.jwks())


@pytest.mark.parametrize("garbage", ["", "a.b.c", "x" * 20000])
def test_garbage(garbage: str, key: ClientKey) -> None:
    refused(garbage, key.jwks())


def test_validate_jwks_at_registration() -> None:
    good = ClientKey.generate("ES384")
    assert validate_jwks(good.jwks()) == good.jwks()
    private = {"keys": [good.key.as_dict(private=True) | {"kid": "k"}]}
    for bad in (
        {},
        {"keys": []},
        {"keys": [{"kty": "EC"}]},
        private,
        {"keys": [{"kty": "oct", "kid": "k", "k": "AA"}]},
    ):
        with pytest.raises(HearthError) as error:
            validate_jwks(bad)
        assert error.value.code is errors.INVALID_CLIENT_METADATA
