"""Helpers shared by tests: deterministic clock and randomness, throwaway instances."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hearth.domain import Principal, PrincipalKind
from hearth.settings import load_settings
from hearth.storage import RecordRepository
from hearth.storage.access import AccessControl
from hearth.storage.repository import SearchBounds
from hearth.wiring import ADMIN_ROLE, Container, InitResult, init_instance

__all__ = [
    "FixedClock",
    "Instance",
    "SeededRandom",
    "admin",
    "cli",
    "make_instance",
    "nobody",
    "self_signed",
]


class FixedClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 15, 9, 30, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class SeededRandom:
    """Deterministic bytes (SHA-256 in counter mode over a seed): reproducible tests only."""

    def __init__(self, seed: bytes = b"hearth-tests") -> None:
        self._seed = seed
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:n]


class Instance:
    """A Hearth instance in a temporary home, with its container and admin token."""

    def __init__(self, home: Path, result: InitResult, container: Container) -> None:
        self.home = home
        self.result = result
        self.container = container
        self.admin_token = result.admin_token

    @property
    def settings_url(self) -> str:
        return self.container.settings.database_url.reveal()


def make_instance(
    home: Path,
    database_url: str | None,
    *,
    clock: FixedClock | None = None,
    random: SeededRandom | None = None,
) -> Instance:
    result = init_instance(home, database_url=database_url, clock=clock, random=random)
    container = Container(load_settings(home), clock=clock, random=random)
    return Instance(home, result, container)


def repository(
    container: Container,
    principal: Principal,
    *,
    policy: AccessControl | None = None,
    bounds: SearchBounds | None = None,
) -> RecordRepository:
    """A repository on ``container``'s store for ``principal``, under another ``policy`` (a role
    catalog of the test's own) or other search ``bounds`` than the container's."""
    return RecordRepository(
        principal=principal,
        policy=policy or container.policy,
        store=container.store,
        keyring=container.keyring,
        audit=container.audit,
        clock=container.clock,
        random=container.random,
        keys_current=container.live_keys.ensure_current,
        bounds=bounds,
    )


def admin(subject: str = "admin") -> Principal:
    return Principal(subject=subject, roles=frozenset({ADMIN_ROLE}), source="127.0.0.1")


def nobody(subject: str = "mallory") -> Principal:
    """An authenticated principal with no role: every access must be denied."""
    return Principal(subject=subject, kind=PrincipalKind.USER, source="127.0.0.1")


def self_signed(
    directory: Path,
    names: tuple[str, ...] = ("localhost",),
    *,
    stem: str = "",
    ca: bool = False,
) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``names`` (host names or IP addresses; the first is
    the common name), valid for a day, written as ``{stem}cert.pem`` and ``{stem}key.pem``
    (the key mode 0600, as ``hearth serve`` requires). ``ca`` marks it a CA, for clients that
    trust it as their ``cafile``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}cert.pem", directory / f"{stem}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def cli(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    catch_exceptions: bool = False,
) -> tuple[int, str]:
    """Run ``hearth --home HOME ARGS...`` in process; its exit code and output."""
    from click.testing import CliRunner

    from hearth.cli import main

    result = CliRunner().invoke(
        main, ["--home", str(home), *args], env=env, catch_exceptions=catch_exceptions
    )
    return result.exit_code, result.output
