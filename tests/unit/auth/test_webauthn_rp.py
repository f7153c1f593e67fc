"""The WebAuthn relying party (hearth.auth.webauthn_rp) against a software authenticator."""

from __future__ import annotations

import json

import pytest
from tests.integration.auth.softkey import SoftKey, b64

from hearth.auth.webauthn_rp import (
    RelyingParty,
    StoredKey,
    assertion_credential_id,
    authentication_options,
    registration_options,
    verify_authentication,
    verify_registration,
)
from hearth.domain import HearthError

RP = RelyingParty("localhost", "Hearth", ("https://localhost",))
CHALLENGE = b"c" * 32
HANDLE = b"h" * 32


def creation(platform: bool | None = None, exclude: tuple[StoredKey, ...] = ()) -> dict:  # type: ignore[type-arg]
    return json.loads(
        registration_options(
            RP,
            user_handle=HANDLE,
            user_name="alice",
            display_name="",
            challenge=CHALLENGE,
            exclude=exclude,
            platform=platform,
        )
    )


def failure(code: str, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HearthError) as refused:
        fn(*args, **kwargs)
    assert refused.value.code.code == code


def test_creation_options_prefer_uv_and_discoverable_keys() -> None:
    options = creation(platform=True, exclude=(StoredKey(b"old", ("usb", "bogus")),))
    assert options["rp"] == {"id": "localhost", "name": "Hearth"}
    assert options["challenge"] == b64(CHALLENGE)
    assert options["user"]["id"] == b64(HANDLE)
    assert options["user"]["displayName"] == "alice"
    selection = options["authenticatorSelection"]
    assert selection["userVerification"] == "preferred"
    assert selection["residentKey"] == "preferred"
    assert selection["authenticatorAttachment"] == "platform"
    assert options["excludeCredentials"] == [
        {"id": b64(b"old"), "type": "public-key", "transports": ["usb"]}
    ]
    assert creation(platform=False)["authenticatorSelection"]["authenticatorAttachment"] == (
        "cross-platform"
    )
    assert "authenticatorAttachment" not in creation()["authenticatorSelection"]


def test_registration_and_assertion_round_trip() -> None:
    key = SoftKey(transport="internal")
    new = verify_registration(RP, key.create(creation()), challenge=CHALLENGE, require_uv=True)
    assert new.user_verified
    assert new.platform
    assert new.transports == ("internal",)
    request = json.loads(
        authentication_options(
            RP, challenge=CHALLENGE, allow=[StoredKey(new.credential_id)], require_uv=True
        )
    )
    assert request["userVerification"] == "required"
    response = key.get(request)
    assert assertion_credential_id(response) == (new.credential_id, HANDLE)
    result = verify_authentication(
        RP,
        json.dumps(response),
        challenge=CHALLENGE,
        public_key=new.public_key,
        sign_count=new.sign_count,
        require_uv=True,
    )
    assert result.new_sign_count == new.sign_count + 1
    assert result.user_verified


def test_every_failure_is_one_opaque_error() -> None:
    key = SoftKey()
    made = key.create(creation())
    failure("HRT-0709", verify_registration, RP, made, challenge=b"x" * 32, require_uv=False)
    failure(
        "HRT-0709", verify_registration, RP, {"id": "??"}, challenge=CHALLENGE, require_uv=False
    )
    failure(
        "HRT-0709",
        verify_registration,
        RelyingParty("evil.example", "x", ("https://localhost",)),
        made,
        challenge=CHALLENGE,
        require_uv=False,
    )
    new = verify_registration(RP, made, challenge=CHALLENGE, require_uv=False)
    request = json.loads(authentication_options(RP, challenge=CHALLENGE, require_uv=False))
    assert request["userVerification"] == "preferred"
    assert "allowCredentials" not in request or request["allowCredentials"] == []
    response = key.get(request)
    kwargs = {"public_key": new.public_key, "sign_count": new.sign_count, "require_uv": False}
    failure("HRT-0709", verify_authentication, RP, response, challenge=b"y" * 32, **kwargs)
    failure("HRT-0709", assertion_credential_id, "not json")
    other = RelyingParty("localhost", "Hearth", ("https://other.example",))
    failure("HRT-0709", verify_authentication, other, response, challenge=CHALLENGE, **kwargs)
    # A replay of an assertion whose counter is not above the stored one.
    stale = {**kwargs, "sign_count": new.sign_count + 1}
    failure("HRT-0709", verify_authentication, RP, response, challenge=CHALLENGE, **stale)


def test_user_verification_is_checked_by_the_server() -> None:
    key = SoftKey(uv=False)
    made = key.create(creation())
    failure("HRT-0710", verify_registration, RP, made, challenge=CHALLENGE, require_uv=True)
    new = verify_registration(RP, made, challenge=CHALLENGE, require_uv=False)
    assert not new.user_verified
    response = key.get(json.loads(authentication_options(RP, challenge=CHALLENGE, require_uv=True)))
    failure(
        "HRT-0710",
        verify_authentication,
        RP,
        response,
        challenge=CHALLENGE,
        public_key=new.public_key,
        sign_count=new.sign_count,
        require_uv=True,
    )
