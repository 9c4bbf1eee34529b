"""Enrollment: join tokens for new nodes and certificates for nodes and users.

Any node creates join tokens (they need only the CA's fingerprint); the nodes that
hold the lab CA's key (the voters, node/identity/ca_custody.py) sign. A node
without the key relays a user certificate to one that holds it. A join token is
single use cluster-wide (its creation and use are entries of the control log,
node/identity/token_ledger.py) and only the SHA-256 of its secret is recorded, so
a leaked store does not let anyone join. Every check that can fail runs before
the token is consumed, so a malformed request never burns a valid token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from murmur.certs import (
    CertificateAuthority,
    CertificateIdentity,
    JoinToken,
    Role,
    hash_secret,
    identity_from_certificate,
    new_join_token,
    validate_name,
)
from murmur.node.deny_list import DenyList
from murmur.node.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError
from murmur.node.event_log import EventLog
from murmur.node.identity.token_ledger import StoreTokenLedger, TokenLedger
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


UserCertificateRelay = Callable[[str, Role, bytes, int, str], Awaitable[IssuedCertificate]]
"""Has a CA holder sign a user certificate: (name, role, CSR, ttl days, admin)."""

UserCertificateRecorder = Callable[[CertificateIdentity, str], Awaitable[None]]
"""Records a user certificate this node signed, with the admin who asked, in the
control log (``murmur user list`` reads it); raises when it could not."""


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
        deny_list: DenyList | None = None,
        tokens: TokenLedger | None = None,
        ca_fingerprint: str = "",
        relay: UserCertificateRelay | None = None,
        name_in_use: Callable[[str], bool] | None = None,
        anchors: Callable[[], bytes] | None = None,
        record_user: UserCertificateRecorder | None = None,
    ) -> None:
        self._record_user = record_user
        self._deny_list = deny_list
        self._anchors = anchors
        self._ca = ca
        self._tokens: TokenLedger = tokens or StoreTokenLedger(store)
        self._ca_fingerprint = ca.fingerprint if ca is not None else ca_fingerprint
        self._relay = relay
        self._name_in_use = name_in_use
        self._store = store
        self._events = events
        self._join_port = join_port
        self._default_token_ttl = default_token_ttl
        self._node_certificate_days = node_certificate_days
        self._user_certificate_days = user_certificate_days

    def _not_before_floor(self, name: str) -> datetime | None:
        """A certificate for a revoked name starts after its newest revocation, so the
        deny list accepts it (node/deny_list.py): ``murmur user add`` brings back a
        revoked user at once."""
        return self._deny_list.not_before_floor(name) if self._deny_list is not None else None

    async def reserve_own_name(self, name: str) -> None:
        """Records the CA node's own name, so no joining node can take it."""
        if await self._store.get_meta(_issued_key(name)) is None:
            await self._store.set_meta(_issued_key(name), "self")

    def adopt_ca(self, ca: CertificateAuthority) -> None:
        """This node holds the lab CA from now on (a voter that was handed the key)."""
        if self._ca_fingerprint and ca.fingerprint != self._ca_fingerprint:
            raise ValueError("a CA other than the cluster's was offered")
        self._ca = ca
        self._ca_fingerprint = ca.fingerprint

    def follow_signing(self, fingerprint: str) -> CertificateAuthority | None:
        """The CA of ``fingerprint`` signs from now on (a CA rotation): tokens pin it,
        and a key held of another CA is no longer used. Returns that key's CA (the
        caller deletes it from disk), None when none was dropped."""
        self._ca_fingerprint = fingerprint
        dropped = self._ca if self._ca is not None and self._ca.fingerprint != fingerprint else None
        if dropped is not None:
            self._ca = None
        return dropped

    @property
    def signing_fingerprint(self) -> str:
        """The CA that signs now (join tokens pin it)."""
        return self._ca_fingerprint

    def _issued(self, certificate_pem: bytes, ca: CertificateAuthority) -> IssuedCertificate:
        """A certificate with the CAs to trust along with it: every trusted one (in a
        rotation's overlap window, old and new), else the signing one."""
        anchors = self._anchors() if self._anchors is not None else ca.certificate_pem
        return IssuedCertificate(certificate_pem, anchors)

    @property
    def ca(self) -> CertificateAuthority | None:
        """The lab CA when this node holds its key."""
        return self._ca

    def _authority(self) -> CertificateAuthority:
        if self._ca is None:
            raise FailedPreconditionError(
                "this node does not hold the lab CA key yet; run this against a voter "
                "(`murmur status` lists them)"
            )
        return self._ca

    async def create_join_token(
        self, *, created_by: str, ttl: timedelta | None
    ) -> tuple[JoinToken, datetime]:
        if not self._ca_fingerprint:
            raise FailedPreconditionError("this node does not know the lab CA's fingerprint")
        ttl = ttl or self._default_token_ttl
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise InvalidArgumentError(
                f"token ttl must be between 1 s and {MAX_TOKEN_TTL.days} days"
            )
        token = new_join_token(ca_fingerprint=self._ca_fingerprint, join_port=self._join_port)
        now = datetime.now(UTC)
        expires_at = now + ttl
        await self._tokens.record(
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
        if await self._store.get_meta(_issued_key(name)) is not None or (
            self._name_in_use is not None and self._name_in_use(name)
        ):
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
            not_before_floor=self._not_before_floor(name),
        )
        await self._tokens.consume(
            token_id=token_id,
            secret_sha256=hash_secret(secret),
            now=datetime.now(UTC),
            used_by=name,
            address=address,
        )
        await self._store.set_meta(_issued_key(name), address or "?")
        await self._events.record(
            kind="node.joined", subject=name, message=f"node {name} joined from {address or '?'}"
        )
        return self._issued(certificate, ca)

    async def issue_user_certificate(
        self, *, name: str, role: Role, csr_pem: bytes, ttl_days: int, requested_by: str = ""
    ) -> IssuedCertificate:
        """Signs a user's CSR here, or has a CA holder sign it (``relay``) when this
        node holds no CA key."""
        if self._ca is None and self._relay is not None:
            if role is Role.NODE:
                raise InvalidArgumentError(
                    "role must be admin, member or viewer; nodes join with a token"
                )
            return await self._relay(validate_name(name), role, csr_pem, ttl_days, requested_by)
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
            csr_pem,
            name=name,
            role=role,
            validity_days=ttl_days or self._user_certificate_days,
            not_before_floor=self._not_before_floor(name),
        )
        if self._record_user is not None:
            # Recorded before the certificate is handed over: one the log does not
            # hold never leaves this node (the caller retries with a new CSR).
            await self._record_user(identity_from_certificate(certificate), requested_by)
        await self._events.record(
            kind="user.issued", subject=name, message=f"certificate issued to {name} ({role.value})"
        )
        # A user's bundle trusts the signing CA alone: after a rotation's finish it
        # must not go on trusting the retired one (nodes renew from the new CA
        # within seconds of the start, so it reaches every node).
        return IssuedCertificate(certificate, ca.certificate_pem)

    async def renew_node_certificate(
        self, *, name: str, csr_pem: bytes, addresses: Sequence[str]
    ) -> IssuedCertificate:
        """Signs a new certificate for node ``name`` (the caller's own name, from its
        certificate): renewal before expiry (node/identity/renewal.py). A revoked
        node never gets here: the revocation interceptor refused its call."""
        ca = self._authority()
        certificate = ca.sign_csr(
            csr_pem,
            name=validate_name(name),
            role=Role.NODE,
            validity_days=self._node_certificate_days,
            node_addresses=list(addresses),
            not_before_floor=self._not_before_floor(name),
        )
        await self._events.record(
            kind="node.certificate_renewed",
            subject=name,
            message=f"node {name}'s certificate renewed",
        )
        return self._issued(certificate, ca)
