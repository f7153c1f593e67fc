"""Mutual TLS for ``hearth serve --tls-client-ca`` (RFC 8705): the server asks every TLS
client for a certificate, verifies its chain against the configured client CAs during the
handshake, and hands the certificate to the application through the ASGI TLS extension
(``scope["extensions"]["tls"]``), where validity, revocation (``--tls-client-crl``) and the
explicit mapping to a user or client are checked (``hearth.services.oauth.certificates``).

uvicorn verifies client certificates but does not expose them to the application, so
``TlsScopeProtocol`` wraps the HTTP protocol every server runs (``HeadLimitedProtocol``,
uvicorn's httptools protocol with limits on the request head): when a connection is made it
reads the peer certificate from the SSL object and adds it to the scope of every request on
that connection.
A certificate is optional at the TLS layer (``CERT_OPTIONAL``): a client without one can still
use a bearer token; one that presents a certificate that fails verification is refused in the
handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hearth.web.protocol import HeadLimitedProtocol

__all__ = ["TlsScopeProtocol"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _with_tls(app: ASGIApp, extension: dict[str, Any]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            scope.setdefault("extensions", {})["tls"] = extension
        await app(scope, receive, send)

    return wrapped


class TlsScopeProtocol(HeadLimitedProtocol):
    """Hearth's HTTP protocol, with the ASGI TLS extension filled from the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            return
        der = ssl_object.getpeercert(binary_form=True)
        cipher = ssl_object.cipher()
        extension: dict[str, Any] = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": None,
            "cipher_suite": None if cipher is None else cipher[0],
        }
        self.app = _with_tls(self.app, extension)
