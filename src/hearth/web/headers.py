"""Security headers, set in one place with the reason for each (Medplum, OWASP ASVS V3)."""

from __future__ import annotations

__all__ = ["API_HEADERS", "security_headers"]

API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Browsers must use HTTPS for this host from now on (ASVS 3.4.1; ignored over plain HTTP).
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    # Never sniff a response into another type: JSON must not run as script (ASVS 3.4.4).
    (b"x-content-type-options", b"nosniff"),
    # API responses are data: nothing may load, run or frame them (ASVS 3.4.3, 3.4.6).
    (
        b"content-security-policy",
        b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    # URLs may carry search values: never send them to another site (ASVS 3.4.5).
    (b"referrer-policy", b"no-referrer"),
    # PHI must not be kept by browsers or shared caches.
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    # Other origins may not embed these responses as resources.
    (b"cross-origin-resource-policy", b"same-origin"),
)


def security_headers(existing: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add the security headers a response did not set itself."""
    present = {name.lower() for name, _ in existing}
    return existing + [(name, value) for name, value in API_HEADERS if name not in present]
