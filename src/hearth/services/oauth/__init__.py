"""OAuth 2 / SMART use cases: client registry, client authentication, tokens, certificates.

Adapters import the protocol helpers they render (endpoints, discovery, error bodies) from
here, not from the pure ``hearth.auth`` package.
"""

from hearth.auth.oauth import Endpoints, oauth_error_body, oauth_uris, smart_configuration
from hearth.services.oauth.authorization import (
    AuthorizationService,
    PendingAuthorization,
    redirect_with,
)
from hearth.services.oauth.certificates import CertificateService, PresentedCertificate
from hearth.services.oauth.client_auth import (
    ClientAuthenticator,
    ClientCredentials,
    bound_thumbprint,
)
from hearth.services.oauth.clients import Client, ClientRegistry, ClientSpec
from hearth.services.oauth.jwks_fetch import JwksFetcher
from hearth.services.oauth.tokens import TokenService

__all__ = [
    "AuthorizationService",
    "PendingAuthorization",
    "redirect_with",
    "Endpoints",
    "oauth_error_body",
    "oauth_uris",
    "smart_configuration",
    "CertificateService",
    "Client",
    "ClientAuthenticator",
    "ClientCredentials",
    "ClientRegistry",
    "ClientSpec",
    "JwksFetcher",
    "PresentedCertificate",
    "TokenService",
    "bound_thumbprint",
]
