"""Edge cases of the pure OAuth and certificate code: each defensive branch refuses as it says."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from tests.oauth_support import ClientKey, Pki

from hearth.auth.certificates import load_certificates, load_revocation_list
from hearth.auth.oauth.assertion import (
    assertion_issuer,
    validate_client_assertion,
    validate_jwks,
)
from hearth.auth.oauth.errors import oauth_error, oauth_error_body
from hearth.auth.oauth.scopes import ScopeRequest
from hearth.auth.oauth.secrets import issue_secret, parse_secret
from hearth.auth.oauth.tokens import AccessClaims, TokenKeys
from hearth.crypto import p256_jwk_from_seed
from hearth.domain import HearthError, errors

TOKEN_URL = "https://h.example/oauth/token"


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _signed(key: ClientKey, payload: bytes) -> str:
    return jws.serialize_compact({"alg": key.alg, "kid": key.kid}, payload, key.key, [key.alg])


def test_assertion_payloads_that_are_not_claims() -> None:
    key = ClientKey.generate("ES384")
    for payload in (b"not json", b"[1, 2]"):
        token = _signed(key, payload)
        with pytest.raises(HearthError) as refused:
            assertion_issuer(token)
        assert refused.value.code is errors.INVALID_CLIENT
    with pytest.raises(HearthError):
        assertion_issuer(_signed(key, json.dumps({"sub": "x"}).encode()))


def test_registered_jwk_that_does_not_import() -> None:
    key = ClientKey.generate("ES384")
    broken = {**key.public_jwk(), "x": "AAAA"}
    with pytest.raises(HearthError) as refused:
        validate_jwks({"keys": [broken]})
    assert refused.value.code is errors.INVALID_CLIENT_METADATA
    token = jws.serialize_compact(
        {"alg": "ES384", "kid": key.kid},
        json.dumps({"iss": "c", "sub": "c", "aud": TOKEN_URL, "exp": 2, "jti": "j"}),
        key.key,
        ["ES384"],
    )
    with pytest.raises(HearthError):
        validate_client_assertion(
            token,
            client_id="c",
            jwks={"keys": [broken]},
            token_url=TOKEN_URL,
            now=1,
            registered_jku=None,
        )


def test_short_rsa_keys_are_refused_at_registration() -> None:
    # A deliberately short key, to see it refused.
    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()  # noqa: S505

    def enc(n: int) -> str:
        return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "kid": "k", "n": enc(numbers.n), "e": enc(numbers.e)}
    with pytest.raises(HearthError) as refused:
        validate_jwks({"keys": [jwk]})
    assert "2048" in refused.value.detail
    with pytest.raises(HearthError):
        validate_jwks({"keys": [{"kty": "RSA", "kid": "k", "e": "AQAB"}]})
    with pytest.raises(HearthError):
        validate_jwks({"keys": [{"kty": "RSA", "kid": "k", "n": "AAAAA", "e": "AQAB"}]})
    # A short key served by a JWKS URL never verifies an assertion either.
    signer = ClientKey.generate("RS384")
    signer.kid = "k"
    with pytest.raises(HearthError):
        validate_client_assertion(
            _signed(signer, b"{}"),
            client_id="c",
            jwks={"keys": [{**jwk, "kid": "k"}]},
            token_url=TOKEN_URL,
            now=1,
            registered_jku=None,
        )


def test_oauth_error_strings() -> None:
    assert oauth_error(HearthError(errors.INTERNAL)) == "server_error"
    assert oauth_error(HearthError(errors.STORAGE_UNAVAILABLE)) == "temporarily_unavailable"
    assert oauth_error(HearthError(errors.NOT_FOUND)) == "invalid_request"
    body = oauth_error_body(HearthError(errors.INVALID_GRANT, "Nope."))
    assert body == {"error": "invalid_grant", "error_description": "Nope. [HRT-0422]"}


def test_overlong_scope_is_refused() -> None:
    with pytest.raises(HearthError) as refused:
        ScopeRequest.parse("patient/*.rs " * 400)
    assert refused.value.code is errors.INVALID_SCOPE


def test_secret_shapes() -> None:
    issued = issue_secret("hrr", _Counter())
    assert parse_secret("hrr", issued.value) is not None
    assert parse_secret("hrc", issued.value) is None  # another kind
    for bad in ("hrr_a-b_c", "hrr__c", "hrr_a_", "hrr_a_b_c", "hrr_é_c"):
        assert parse_secret("hrr", bad) is None


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def token_bytes(self, n: int) -> bytes:
        self.n += 1
        return bytes([self.n]) * n


def _keys() -> TokenKeys:
    return TokenKeys({1: p256_jwk_from_seed(b"\x01" * 32)}, 1)


def _claims(**changes: Any) -> dict[str, Any]:
    base = AccessClaims(
        issuer="i",
        audience="a",
        subject="s",
        client_id="c",
        scope="system/*.rs",
        grant_id="g",
        token_id="t",
        issued_at=10,
        expires_at=100,
        encounter="e1",
    ).as_claims()
    return {**base, **changes}


def test_access_claims_with_encounter_and_bad_optional_claims() -> None:
    ring = _keys()
    token = ring.sign(_claims(), typ="at+jwt")
    assert ring.verify_access_token(token, issuer="i", audience="a", now=50).encounter == "e1"
    for bad in ({"patient": 5}, {"fhirUser": ["x"]}):
        with pytest.raises(HearthError):
            ring.verify_access_token(
                ring.sign(_claims(**bad), typ="at+jwt"), issuer="i", audience="a", now=50
            )


def test_access_token_whose_payload_is_not_an_object() -> None:
    ring = _keys()
    active = ring.active_kid
    signed = jws.serialize_compact(
        {"alg": "ES256", "kid": active, "typ": "at+jwt"},
        b"[1]",
        _private(ring),
        ["ES256"],
    )
    with pytest.raises(HearthError):
        ring.verify(signed, typ="at+jwt")


def _private(ring: TokenKeys) -> Any:
    return ring._active  # the test signs with Hearth's own key on purpose


def test_ca_file_and_crl_file_errors(tmp_path: Path) -> None:
    with pytest.raises(HearthError):
        load_certificates(b"junk")
    pki = Pki(tmp_path)
    cas = load_certificates(pki.ca_file.read_bytes())
    malformed = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    with pytest.raises(HearthError):
        load_revocation_list(malformed, cas)


def test_several_crls_take_the_earliest_next_update(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    _, _, one = pki.issue("one")
    first = pki.crl([one], tmp_path / "a.pem").read_bytes()
    second = pki.crl([], tmp_path / "b.pem").read_bytes()
    crl = load_revocation_list(first + second, load_certificates(pki.ca_file.read_bytes()))
    assert crl.next_update is not None
    assert crl.next_update <= datetime.now(UTC) + timedelta(days=1)
    assert len(crl.revoked) == 1
