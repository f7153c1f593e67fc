"""``/.well-known/smart-configuration`` (SMART App Launch 2.2 conformance; SMART-WK-01..05)
and the CapabilityStatement's OAuth URIs extension (read by fhirclient and other SMART v1
clients).

Every URL is absolute (SMART-WK-01). Only what Hearth implements is listed: the capabilities
and scopes here are each backed by a test.
"""

from __future__ import annotations

from typing import Any

from hearth.auth.oauth.assertion import ASSERTION_ALGS

__all__ = ["Endpoints", "oauth_uris", "smart_configuration"]

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-standalone-patient",
    "context-banner",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
)


class Endpoints:
    """The absolute URLs of Hearth's OAuth endpoints: under the server's public origin, with the
    FHIR base URL as issuer and as the audience of every access token (SMART-PK-04)."""

    def __init__(self, fhir_base: str) -> None:
        fhir_base = fhir_base.rstrip("/")
        parts = fhir_base.split("/", 3)  # scheme, "", host[:port], path
        origin = "/".join(parts[:3])
        self.issuer = fhir_base
        self.fhir_base = fhir_base
        self.authorize = f"{origin}/oauth/authorize"
        self.token = f"{origin}/oauth/token"
        self.revoke = f"{origin}/oauth/revoke"
        self.introspect = f"{origin}/oauth/introspect"
        self.jwks = f"{origin}/oauth/jwks"


def smart_configuration(endpoints: Endpoints) -> dict[str, Any]:
    return {
        "issuer": endpoints.issuer,
        "jwks_uri": endpoints.jwks,
        "authorization_endpoint": endpoints.authorize,
        "token_endpoint": endpoints.token,
        "revocation_endpoint": endpoints.revoke,
        "introspection_endpoint": endpoints.introspect,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
        ],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "id_token_signing_alg_values_supported": ["ES256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": [
            "openid",
            "fhirUser",
            "profile",
            "launch",
            "launch/patient",
            "offline_access",
            "online_access",
            "patient/*.cruds",
            "user/*.cruds",
            "system/*.cruds",
        ],
        "capabilities": list(CAPABILITIES),
        "tls_client_certificate_bound_access_tokens": True,
    }


def oauth_uris(endpoints: Endpoints) -> dict[str, str]:
    """The ``oauth-uris`` extension values for the CapabilityStatement's ``rest.security``."""
    return {
        "authorize": endpoints.authorize,
        "token": endpoints.token,
        "revoke": endpoints.revoke,
        "introspect": endpoints.introspect,
    }
