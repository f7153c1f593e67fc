"""Access tokens as JWTs (RFC 9068): every refusal looks the same (ASVS 9.1.1-9.2.3)."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from hearth.auth.oauth.tokens import AccessClaims, TokenKeys
from hearth.crypto import p256_jwk_from_seed
from hearth.domain import HearthError, errors

ISS = AUD = "https://h.example/fhir"
NOW = 1_800_000_000


def claims(**changes: object) -> AccessClaims:
    base = AccessClaims(
        issuer=ISS,
        audience=AUD,
        subject="alice",
        client_id="app1",
        scope="patient/*.rs launch/patient",
        grant_id="g1",
        token_id="t1",
        issued_at=NOW,
        expires_at=NOW + 3600,
        patient="p1",
        fhir_user="Practitioner/x",
        cnf_thumbprint="abc",
    )
    return AccessClaims(**{**{k: getattr(base, k) for k in base.__slots__}, **changes})


def keys(active: int = 1) -> TokenKeys:
    return TokenKeys(
        {1: p256_jwk_from_seed(b"\x01" * 32), 2: p256_jwk_from_seed(b"\x02" * 32)}, active
    )


def refused(token: str, ring: TokenKeys | None = None, **kw: object) -> None:
    args = {"issuer": ISS, "audience": AUD, "now": NOW + 10, **kw}
    with pytest.raises(HearthError) as error:
        (ring or keys()).verify_access_token(token, **args)  # type: ignore[arg-type]
    assert error.value.code is errors.UNAUTHENTICATED
    assert error.value.detail == "The access token is not valid."
    assert "invalid_token" in error.value.headers["WWW-Authenticate"]


def test_round_trip_and_header() -> None:
    ring = keys()
    token = ring.sign_access_token(claims())
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": ring.active_kid, "typ": "at+jwt"}
    assert ring.verify_access_token(token, issuer=ISS, audience=AUD, now=NOW + 10) == claims()


def test_derived_keys_are_deterministic_and_distinct() -> None:
    assert p256_jwk_from_seed(b"\x01" * 32) == p256_jwk_from_seed(b"\x01" * 32)
    assert p256_jwk_from_seed(b"\x01" * 32)["d"] != p256_jwk_from_seed(b"\x02" * 32)["d"]


def test_expired() -> None:
    token = keys().sign_access_token(claims())
    refused(token, now=NOW + 3600)  # exp is exclusive: not accepted at expiry (SMART-TK-01)
    refused(token, now=NOW + 86_400)


def test_not_yet_issued() -> None:
    refused(keys().sign_access_token(claims()), now=NOW - 61)


def test_wrong_audience_and_issuer() -> None:
    token = keys().sign_access_token(claims())
    refused(token, audience="https://other.example/fhir")
    refused(token, issuer="https://other.example/fhir")


def test_wrong_key() -> None:
    token = keys().sign_access_token(claims())
    other = TokenKeys({9: p256_jwk_from_seed(b"\x09" * 32)}, 9)
    refused(token, other)


def test_tampered_payload() -> None:
    token = keys().sign_access_token(claims())
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["scope"] = "user/*.cruds"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    refused(f"{head}.{forged}.{sig}")


def test_wrong_type_id_token_is_not_an_access_token() -> None:
    ring = keys()
    id_token = ring.sign(claims().as_claims(), typ="JWT")  # same claims, ID-token type
    refused(id_token, ring)


def test_alg_none_and_hmac_are_refused() -> None:
    ring = keys()
    kid = ring.active_kid
    body = claims().as_claims()

    def b64(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'kid': kid, 'typ': 'at+jwt'})}.{b64(body)}"
    refused(unsigned + ".", ring)
    refused(unsigned + ".c2ln", ring)
    # An HMAC token keyed with the public key's bytes (the classic confusion attack).
    public = json.dumps(ring.public_jwks()["keys"][0]).encode()
    hmac = jwt.encode(
        {"alg": "HS256", "kid": kid, "typ": "at+jwt"},
        body,
        OctKey.import_key(public),
        algorithms=["HS256"],
    )
    refused(hmac, ring)


def test_signed_by_a_foreign_key_with_our_kid() -> None:
    ring = keys()
    foreign = ECKey.generate_key("P-256")
    token = jwt.encode(
        {"alg": "ES256", "kid": ring.active_kid, "typ": "at+jwt"},
        claims().as_claims(),
        foreign,
        algorithms=["ES256"],
    )
    refused(token, ring)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 9000, "é.é.é"])
def test_garbage(garbage: str) -> None:
    refused(garbage)


def test_rotation_old_tokens_verify_new_tokens_use_the_new_key() -> None:
    before = keys(active=1)
    old_token = before.sign_access_token(claims())
    after = keys(active=2)
    new_token = after.sign_access_token(claims(token_id="t2"))
    assert after.verify_access_token(old_token, issuer=ISS, audience=AUD, now=NOW + 1)
    assert after.active_kid != before.active_kid
    new_kid = json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"]
    assert new_kid == after.active_kid
    assert {k["kid"] for k in after.public_jwks()["keys"]} == {before.active_kid, after.active_kid}
    assert all("d" not in k for k in after.public_jwks()["keys"])
    retired = TokenKeys({2: p256_jwk_from_seed(b"\x02" * 32)}, 2)
    refused(old_token, retired)


def test_missing_or_mistyped_claims() -> None:
    ring = keys()
    for drop in ("sub", "grant", "exp", "client_id"):
        body = {k: v for k, v in claims().as_claims().items() if k != drop}
        refused(ring.sign(body, typ="at+jwt"), ring)
    body = {**claims().as_claims(), "exp": "never"}
    refused(ring.sign(body, typ="at+jwt"), ring)
    body = {**claims().as_claims(), "cnf": {"jkt": "dpop"}}  # a confirmation we do not know
    refused(ring.sign(body, typ="at+jwt"), ring)


def test_the_break_glass_claim() -> None:
    """``hearth_break_glass`` round-trips; a token without it has none; a mistyped one is
    refused like any other mistyped claim."""
    ring = keys()
    carried = claims(break_glass="btg_" + "a" * 24)
    assert carried.as_claims()["hearth_break_glass"] == "btg_" + "a" * 24
    token = ring.sign_access_token(carried)
    assert ring.verify_access_token(token, issuer=ISS, audience=AUD, now=NOW + 10) == carried
    assert "hearth_break_glass" not in claims().as_claims()
    body = {**claims().as_claims(), "hearth_break_glass": ["btg_" + "a" * 24]}
    refused(ring.sign(body, typ="at+jwt"), ring)


def test_no_active_key_cannot_sign() -> None:
    ring = TokenKeys({1: p256_jwk_from_seed(b"\x01" * 32)}, None)
    assert not ring.can_sign
    with pytest.raises(HearthError) as error:
        ring.sign_access_token(claims())
    assert error.value.code is errors.KEY_UNAVAILABLE
