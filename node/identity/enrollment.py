"""Enrollment: join tokens for new nodes and certificates for nodes and users.

Only a node that holds the lab CA's key enrolls; the key never leaves it. A
join token is single use and only the SHA-256 of its secret is stored, so a
leaked store does not let anyone join. Every check that can fail runs before
the token is consumed, so a malformed request never burns a valid token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from murmur.certs import (
    CertificateAuthority,
    JoinToken,
    Role,
    hash_secret,
    new_join_token,
    validate_name,
)
from murmur.node.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError
from murmur.node.event_log import EventLog
from murmur.storage import Store

MAX_TOKEN_TTL = timedelta(days=7)
MAX_USER_CERTIFICATE_DAYS = 3650


def _issued_key(node_name: str) -> str:
    """Meta key recording that a node certificate was issued for this name."""
    return f"node-certificate-issued:{node_name}"


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: bytes
    ca_certificate_pem: bytes


class Enrollment:
    """Issues join tokens and signs certificates with this node's CA."""

    def __init__(
        self,
        *,
        ca: CertificateAuthority | None,
        store: Store,
        events: EventLog,
        join_port: int,
        default_token_ttl: timedelta,
        node_certificate_days: int,
        user_certificate_days: int,
    ) -> None:
        self._ca = ca
        self._store = store
        self._events = events
        self._join_port = join_port
        self._default_token_ttl = default_token_ttl
        self._node_certificate_days = node_certificate_days
        self._user_certificate_days = user_certificate_days

    async def reserve_own_name(self, name: str) -> None:
        """Records the CA node's own name, so no joining node can take it."""
        if await self._store.get_meta(_issued_key(name)) is None:
            await self._store.set_meta(_issued_key(name), "self")

    def _authority(self) -> CertificateAuthority:
        if self._ca is None:
            raise FailedPreconditionError(
                "this node does not hold the lab CA; run this against the node "
                "where `murmur ca init` was run"
            )
        return self._ca

    async def create_join_token(
        self, *, created_by: str, ttl: timedelta | None
    ) -> tuple[JoinToken, datetime]:
        ca = self._authority()
        ttl = ttl or self._default_token_ttl
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise InvalidArgumentError(
                f"token ttl must be between 1 s and {MAX_TOKEN_TTL.days} days"
            )
        token = new_join_token(ca_fingerprint=ca.fingerprint, join_port=self._join_port)
        now = datetime.now(UTC)
        expires_at = now + ttl
        await self._store.add_join_token(
            token_id=token.token_id,
            secret_sha256=hash_secret(token.secret),
            created_at=now,
            expires_at=expires_at,
            created_by=created_by,
        )
        return token, expires_at

    async def join(
        self, *, token_id: str, secret: str, node_name: str, csr_pem: bytes, address: str
    ) -> IssuedCertificate:
        ca = self._authority()
        name = validate_name(node_name)
        if await self._store.get_meta(_issued_key(name)) is not None:
            raise AlreadyExistsError(
                f"a node named {name!r} already joined this cluster; start the new node "
                "with another --name"
            )
        # Sign first (pure, no side effect) so a bad CSR never consumes the token.
        certificate = ca.sign_csr(
            csr_pem,
            name=name,
            role=Role.NODE,
            validity_days=self._node_certificate_days,
            node_addresses=[address] if address else [],
        )
        await self._store.consume_join_token(
            token_id=token_id,
            secret_sha256=hash_secret(secret),
            now=datetime.now(UTC),
            used_by=name,
        )
        await self._store.set_meta(_issued_key(name), address or "?")
        await self._events.record(
            kind="node.joined", subject=name, message=f"node {name} joined from {address or '?'}"
        )
        return IssuedCertificate(certificate, ca.certificate_pem)

    async def issue_user_certificate(
        self, *, name: str, role: Role, csr_pem: bytes, ttl_days: int
    ) -> IssuedCertificate:
        ca = self._authority()
        if role is Role.NODE:
            raise InvalidArgumentError(
                "role must be admin, member or viewer; nodes join with a token"
            )
        if ttl_days > MAX_USER_CERTIFICATE_DAYS:
            raise InvalidArgumentError(
                f"ttl_days must be at most {MAX_USER_CERTIFICATE_DAYS}, got {ttl_days}"
            )
        name = validate_name(name)
        certificate = ca.sign_csr(
            csr_pem, name=name, role=role, validity_days=ttl_days or self._user_certificate_days
        )
        await self._events.record(
            kind="user.issued", subject=name, message=f"certificate issued to {name} ({role.value})"
        )
        return IssuedCertificate(certificate, ca.certificate_pem)
