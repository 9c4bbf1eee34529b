"""Who a certificate says its holder is, and whether it is valid now, without
cryptography.

A client checks its own certificate's dates before every connection (`check_validity`)
from facts parsed once (`CertificateIdentity`); keeping both apart from the parsing
(`murmur.certs.identity`) lets a CLI command that already knows those facts start
without importing cryptography, a fifth of its start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from murmur.certs.errors import CertificateExpiredError, CertificateNotYetValidError
from murmur.certs.roles import Role
from murmur.certs.times import resolve_now

__all__ = ["CertificateIdentity", "check_validity"]


@dataclass(frozen=True)
class CertificateIdentity:
    """The name and role a certificate grants, and when it is valid."""

    name: str
    """The subject's common name: a user or node name."""
    role: Role
    """The subject's organizational unit."""
    serial: str
    """The serial number in lowercase hex without prefix; revocation lists use this."""
    not_before: datetime
    """Start of validity, aware UTC."""
    not_after: datetime
    """End of validity, aware UTC."""


def check_validity(identity: CertificateIdentity, now: datetime | None = None) -> None:
    """Raise unless `now` lies within the certificate's validity period.

    Clients call this before connecting, so a user sees "your certificate expired"
    rather than a bare TLS handshake failure.

    Raises:
        CertificateExpiredError: `now` is after `not_after`.
        CertificateNotYetValidError: `now` is before `not_before`.
    """
    moment = resolve_now(now)
    if moment < identity.not_before:
        raise CertificateNotYetValidError(
            f"the certificate of {identity.name!r} is not valid before "
            f"{identity.not_before.isoformat()} (now {moment.isoformat()}); "
            "check this machine's clock"
        )
    if moment > identity.not_after:
        raise CertificateExpiredError(
            f"the certificate of {identity.name!r} expired at {identity.not_after.isoformat()}; "
            "ask an admin for a new identity"
        )
