"""``hearth serve``: serve the FHIR API."""

from __future__ import annotations

import gc
import ipaddress
import logging
import socket
import ssl
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click
import uvicorn

from hearth.cli.common import State, fail, handle_errors, pass_state
from hearth.domain import HearthError, errors
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.web.protocol import HeadLimitedProtocol
from hearth.web.tls import TlsScopeProtocol
from hearth.wiring import AdminCredential, Container, issue_admin_credential

#: Addresses that bind every interface: the Host header then says nothing about which name a
#: client used, so the names must be configured.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - names, not a bind


def allowed_host_names(
    bind: str, configured: tuple[str, ...], public_base_url: str | None
) -> list[str]:
    """The Host names the server answers to (DNS rebinding defence, ``hearth.web.middleware``):
    the configured ones, the host of ``public_base_url`` and the bound address (loopback names
    are always added by the app). A wildcard bind with no name configured is refused."""
    names = [n.strip().lower() for n in configured if n.strip()]
    if public_base_url:
        public = urlsplit(public_base_url).hostname
        if public:
            names.append(f"[{public}]" if ":" in public else public.lower())
    if bind in _WILDCARDS:
        if not names:
            raise HearthError(
                errors.BAD_PARAMETER,
                f"Serving on {bind or 'every address'} accepts connections for any name, and "
                "Hearth answers only requests addressed to names it knows: pass --allowed-host "
                "NAME (repeatable), or set [server] allowed_hosts or public_base_url in "
                "hearth.toml.",
            )
    else:
        names.append(f"[{bind.strip('[]')}]" if ":" in bind else bind.lower())
    return list(dict.fromkeys(names))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", help="Address to bind (default from hearth.toml, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port (default from hearth.toml, 8080)."
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ask TLS clients for a certificate issued by these CAs (PEM): mutual TLS.",
)
@click.option(
    "--tls-client-crl",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Refuse client certificates this CRL (PEM, signed by a client CA) revokes.",
)
@click.option(
    "--issue-admin-credential",
    is_flag=True,
    help="Print a fresh administrator API token (valid 12 hours) and, while the administrator "
    "cannot sign in to the console yet, a one-time set-up link (valid 1 hour).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A host name clients use to reach this server (repeatable), besides [server] "
    "allowed_hosts and the host of public_base_url. Needed when binding 0.0.0.0.",
)
@click.option("--log-level", default="info", show_default=True)
@pass_state
@handle_errors
def command(
    state: State,
    host: str | None,
    port: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    tls_client_crl: Path | None,
    issue_admin_credential: bool,
    allowed_hosts: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve the FHIR API; refuses a non-loopback address without TLS.

    \b
    Examples:
      hearth --home ./var serve
      hearth --home ./var serve --host 0.0.0.0 --port 443 --tls-cert cert.pem --tls-key key.pem \
          --allowed-host ehr.example.org
      hearth --home ./var serve --tls-cert cert.pem --tls-key key.pem --tls-client-ca cas.pem
    """
    settings = load_settings(state.home)
    host = host or settings.host
    port = port if port is not None else settings.port
    tls_cert = tls_cert or settings.tls_cert
    tls_key = tls_key or settings.tls_key
    tls_client_ca = tls_client_ca or settings.tls_client_ca
    tls_client_crl = tls_client_crl or settings.tls_client_crl
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together.")
    if tls_client_ca is not None and tls_cert is None:
        fail("--tls-client-ca needs TLS: pass --tls-cert and --tls-key.")
    if tls_client_crl is not None and tls_client_ca is None:
        fail("--tls-client-crl needs --tls-client-ca.")
    settings = replace(settings, tls_client_ca=tls_client_ca, tls_client_crl=tls_client_crl)
    if not is_loopback(host) and tls_cert is None:
        fail(
            f"refusing to serve PHI on {host} without TLS: pass --tls-cert and --tls-key, "
            "or bind 127.0.0.1.",
            2,
        )
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError):
            fail(
                "the TLS certificate and key do not load together: --tls-cert must be the "
                "certificate (PEM) and --tls-key its private key (PEM, unencrypted)."
            )
        if tls_key.stat().st_mode & 0o077:
            fail(
                f"the TLS private key {tls_key} can be read by other users of this machine "
                f"(mode {tls_key.stat().st_mode & 0o777:o}): run chmod 600 on it.",
                2,
            )
    try:
        names = allowed_host_names(
            host, settings.allowed_hosts + allowed_hosts, settings.public_base_url
        )
    except HearthError as error:
        fail(error.detail, 2)
        return
    # Bind before anything is announced: a port in use is one plain error, not a "serving at"
    # line followed by the server's own failure.
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}.", 1)
        return
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # Alembic announces its migration context at INFO on every start; that is noise here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    container = Container(settings)
    container.start_background()
    scheme = "https" if tls_cert else "http"
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"{scheme}://{shown_host}:{port}/fhir"
    console = console_url(settings.public_base_url, scheme, host, port)
    click.echo(f"Hearth is serving at {base_url}")
    credential = issue_admin_credential_for(container) if issue_admin_credential else None
    if credential is not None:
        click.echo(f"Administrator API token (valid 12 hours; shown once): {credential.token}")
    click.echo(f"Console sign-in: {console}/login")
    if credential is not None and credential.set_up is not None:
        click.echo(
            "Set up the administrator's console sign-in (one use, valid 1 hour): "
            f"{console}/enrol?token={credential.set_up.token}"
        )
    app = create_app(container, allowed_hosts=names)
    # Everything built so far (the FHIR definitions, search parameter tables, the container)
    # lives as long as the server: move it out of the collector's generations, so that a full
    # collection during a request does not walk it again (70 to 400 ms pauses that set the p95
    # of a clinician's searches, docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        # Mutual TLS: a client certificate is optional, but one that is presented must chain
        # to a client CA; the application checks the rest (validity, CRL, mapping).
        ssl_cert_reqs=ssl.CERT_OPTIONAL if tls_client_ca else ssl.CERT_NONE,
        ssl_ca_certs=str(tls_client_ca) if tls_client_ca else None,
        # Both refuse a request head over 64 KiB or 100 fields with 431 (hearth.web.protocol).
        http=TlsScopeProtocol if tls_client_ca else HeadLimitedProtocol,
        access_log=False,  # uvicorn's access log prints query strings; ours does not
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the address is one), as uvicorn would
    bind it, so that a busy port is found before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def issue_admin_credential_for(container: Container) -> AdminCredential:
    return issue_admin_credential(container, ttl=timedelta(hours=12))


def console_url(public_base_url: str | None, scheme: str, host: str, port: int) -> str:
    """Where people open the console. On loopback this is ``localhost``, not an address:
    WebAuthn relying party ids are host names, and browsers refuse IP addresses."""
    if public_base_url:
        return public_base_url.rstrip("/").removesuffix("/fhir")
    shown = "localhost" if is_loopback(host) else (f"[{host}]" if ":" in host else host)
    return f"{scheme}://{shown}:{port}"
