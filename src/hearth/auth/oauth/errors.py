"""OAuth 2 error strings for Hearth's stable error codes (RFC 6749 sec. 5.2, 4.1.2.1; RFC 6750
sec. 3.1; RFC 7591 sec. 3.2.2).

Token, revocation and introspection endpoints answer ``{"error": ..., "error_description":
...}`` instead of an OperationOutcome; the description is the error's detail, which never
quotes a token or a secret.
"""

from __future__ import annotations

from hearth.domain import HearthError, errors

__all__ = ["oauth_error", "oauth_error_body"]

_STRINGS = {
    errors.OAUTH_INVALID_REQUEST.code: "invalid_request",
    errors.BAD_REQUEST.code: "invalid_request",
    errors.PAYLOAD_TOO_LARGE.code: "invalid_request",
    errors.UNSUPPORTED_MEDIA_TYPE.code: "invalid_request",
    errors.INVALID_CLIENT.code: "invalid_client",
    errors.CERTIFICATE_REFUSED.code: "invalid_client",
    errors.INVALID_GRANT.code: "invalid_grant",
    errors.UNAUTHORIZED_CLIENT.code: "unauthorized_client",
    errors.UNSUPPORTED_GRANT_TYPE.code: "unsupported_grant_type",
    errors.INVALID_SCOPE.code: "invalid_scope",
    errors.ACCESS_DENIED.code: "access_denied",
    errors.UNSUPPORTED_RESPONSE_TYPE.code: "unsupported_response_type",
    errors.INVALID_CLIENT_METADATA.code: "invalid_client_metadata",
    errors.UNAUTHENTICATED.code: "invalid_token",
    errors.FORBIDDEN.code: "insufficient_scope",
}


def oauth_error(error: HearthError) -> str:
    """The RFC 6749 ``error`` value for a Hearth error; ``server_error`` for server faults."""
    if error.status >= 500:
        return "temporarily_unavailable" if error.status == 503 else "server_error"
    return _STRINGS.get(error.code.code, "invalid_request")


def oauth_error_body(error: HearthError) -> dict[str, str]:
    return {"error": oauth_error(error), "error_description": f"{error.detail} [{error.code.code}]"}
