"""The WebAuthn relying party: registration and authentication ceremonies (W3C WebAuthn Level 2
sec. 7.1 and 7.2, via the ``webauthn`` package).

Pure: the challenge comes in as a parameter (NIST-CR-01: Hearth uses 32 random bytes), nothing is
stored here. The service keeps the challenge in the session between the two halves of a
ceremony, and keeps credentials.

What Hearth decides on top of the package:

- user verification (UV) is *preferred* in every request and *checked* by the server when
  required: for administrators always, and for passkeys used as the only factor, since a key
  without UV is one factor (NIST-SY-02). A page can ask for less; the server does not accept less
  (:data:`hearth.domain.errors.WEBAUTHN_UV_REQUIRED`);
- user presence is always required (sec. 7.2 step 16);
- sign counters must grow when either side is non-zero (sec. 7.2 step 21), which refuses a
  cloned authenticator's replay;
- every other failure is one opaque ``WEBAUTHN_FAILED``: a probe learns nothing about which check
  failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from hearth.domain import HearthError, errors

__all__ = [
    "CHALLENGE_BYTES",
    "Assertion",
    "NewCredential",
    "RelyingParty",
    "StoredKey",
    "assertion_credential_id",
    "authentication_options",
    "registration_options",
    "verify_authentication",
    "verify_registration",
]

CHALLENGE_BYTES = 32
_TIMEOUT_MS = 120_000
# The package raises its own exceptions for protocol failures, and plain ones on some malformed
# inputs (bad base64, missing members); every one of them is a failed ceremony to the caller.
_ERRORS = (
    WebAuthnException,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
)


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who Hearth is to authenticators: the RP id (a host name) and the origins it serves."""

    rp_id: str
    name: str
    origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A registered credential as the service hands it to :func:`authentication_options`."""

    credential_id: bytes
    transports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What a verified registration yields, ready to store (never a private key: there is none
    on the server, and no biometric template either)."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    user_verified: bool
    backup_eligible: bool
    transports: tuple[str, ...]
    platform: bool


@dataclass(frozen=True, slots=True)
class Assertion:
    credential_id: bytes
    new_sign_count: int
    user_verified: bool


def _descriptor(key: StoredKey) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in key.transports:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # a transport this package does not know: the browser will try them all
    return PublicKeyCredentialDescriptor(id=key.credential_id, transports=transports or None)


def registration_options(
    rp: RelyingParty,
    *,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    exclude: Sequence[StoredKey] = (),
    platform: bool | None = None,
) -> str:
    """``PublicKeyCredentialCreationOptions`` as JSON for ``parseCreationOptionsFromJSON``
    (sec. 5.4). ``platform`` True asks for the device's own authenticator (fingerprint, face),
    False for a roaming key, None for either. A discoverable credential is preferred, so the key
    also works as a passkey without a user name. ``exclude`` stops the same key being registered
    twice (sec. 5.4.3)."""
    attachment = None
    if platform is not None:
        attachment = (
            AuthenticatorAttachment.PLATFORM if platform else AuthenticatorAttachment.CROSS_PLATFORM
        )
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_name=user_name,
        user_id=user_handle,
        user_display_name=display_name or user_name,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            authenticator_attachment=attachment,
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(k) for k in exclude],
    )
    return str(options_to_json(options))


def verify_registration(
    rp: RelyingParty,
    response: str | Mapping[str, Any],
    *,
    challenge: bytes,
    require_uv: bool,
) -> NewCredential:
    """Verify a ``navigator.credentials.create()`` result (sec. 7.1); raise ``WEBAUTHN_FAILED``
    or, when UV was required and not done, ``WEBAUTHN_UV_REQUIRED``."""
    raw = response if isinstance(response, str) else json.dumps(dict(response))
    try:
        parsed = parse_registration_credential_json(raw)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_presence=True,
            require_user_verification=False,  # checked below, with its own error
        )
    except _ERRORS:
        raise HearthError(errors.WEBAUTHN_FAILED) from None
    if require_uv and not verified.user_verified:
        raise HearthError(errors.WEBAUTHN_UV_REQUIRED)
    transports = tuple(str(t.value) for t in (parsed.response.transports or ()))
    attachment = parsed.authenticator_attachment
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=str(verified.aaguid),
        user_verified=verified.user_verified,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        transports=transports,
        platform=attachment == AuthenticatorAttachment.PLATFORM or "internal" in transports,
    )


def authentication_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    allow: Sequence[StoredKey] = (),
    require_uv: bool,
) -> str:
    """``PublicKeyCredentialRequestOptions`` as JSON for ``parseRequestOptionsFromJSON``
    (sec. 5.5). An empty ``allow`` asks for a discoverable credential (a passkey: the
    authenticator names the user)."""
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=_TIMEOUT_MS,
        allow_credentials=[_descriptor(k) for k in allow],
        user_verification=(
            UserVerificationRequirement.REQUIRED
            if require_uv
            else UserVerificationRequirement.PREFERRED
        ),
    )
    return str(options_to_json(options))


def assertion_credential_id(response: str | Mapping[str, Any]) -> tuple[bytes, bytes | None]:
    """The credential id and user handle an assertion claims, to find the stored key before
    verifying (sec. 7.2 steps 6-7). Raises ``WEBAUTHN_FAILED`` if it cannot be parsed."""
    raw = response if isinstance(response, str) else json.dumps(dict(response))
    try:
        parsed = parse_authentication_credential_json(raw)
    except _ERRORS:
        raise HearthError(errors.WEBAUTHN_FAILED) from None
    return parsed.raw_id, parsed.response.user_handle


def verify_authentication(
    rp: RelyingParty,
    response: str | Mapping[str, Any],
    *,
    challenge: bytes,
    public_key: bytes,
    sign_count: int,
    require_uv: bool,
) -> Assertion:
    """Verify a ``navigator.credentials.get()`` result against a stored key (sec. 7.2)."""
    raw = response if isinstance(response, str) else json.dumps(dict(response))
    try:
        verified = verify_authentication_response(
            credential=raw,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=public_key,
            credential_current_sign_count=sign_count,
            require_user_verification=False,  # checked below, with its own error
        )
    except _ERRORS:
        raise HearthError(errors.WEBAUTHN_FAILED) from None
    if require_uv and not verified.user_verified:
        raise HearthError(errors.WEBAUTHN_UV_REQUIRED)
    return Assertion(
        credential_id=verified.credential_id,
        new_sign_count=verified.new_sign_count,
        user_verified=verified.user_verified,
    )
