"""The daemon's wiring of the cluster's trust: no single node holds the keys.

* Enrollment with join tokens in the control log (single use cluster-wide), a
  user certificate relayed to a CA holder by a node without the key.
* The CA key sealed to the voters (node/identity/ca_custody.py): a new voter
  fetches it, and every holder opens the join listener.
* Certificate renewal (node/identity/renewal.py): the listeners serve the new
  certificate from the next handshake (node/api/tls.py), new outgoing channels use
  it, open connections and streams go on.
* CA rotation (node/trust_anchors.py, node/identity/ca_rotation.py): a holder of
  the signing key starts it; every node follows the steps the log holds: it trusts
  what they say from the next handshake on, drops a key that no longer signs,
  fetches the new one (a voter), and renews a certificate of the old CA at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import grpc
from cryptography import x509

from murmur.certs import CertificateAuthority, CertificateIdentity, IdentityBundle, Role
from murmur.node.agent.convert import ROLE_TO_PROTO
from murmur.node.api.peer_client import PeerClient
from murmur.node.api.server import build_join_server
from murmur.node.api.services.join import JoinServicer
from murmur.node.api.services.trust import TrustServicer
from murmur.node.api.tls import ServerCertificates
from murmur.node.config import NodeConfig
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.commands import (
    AddTrustedCa,
    Command,
    RecordUserCertificate,
    RetireCa,
)
from murmur.node.deny_list import DenyList
from murmur.node.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    UpgradeInProgressError,
)
from murmur.node.event_log import EventLog
from murmur.node.identity.bootstrap import NodeIdentity
from murmur.node.identity.ca_custody import CaCustody, ca_passphrase
from murmur.node.identity.ca_rotation import RotationKeys
from murmur.node.identity.enrollment import Enrollment, IssuedCertificate
from murmur.node.identity.renewal import CertificateRenewer, Signer
from murmur.node.identity.token_ledger import ReplicatedTokenLedger
from murmur.node.identity.trust_client import TrustClient
from murmur.node.local_node import LocalNode
from murmur.node.membership import MembershipRunner, PeerTransport
from murmur.node.trust_anchors import CaChanges, Trust, trust_of
from murmur.storage import AuditEntry, Store
from murmur.v1 import cluster_pb2, trust_pb2

_log = logging.getLogger("murmur.node")


class ClusterTrust:
    """Enrollment, the CA key's custody, the join listener and renewal, for one node.

    Args:
        commit: commits a control command through the leader (``ClusterJobs.commit``).
        on_local_change: this node's description changed (it now holds the CA).
        record_audit: records a join in the audit trail (``AuditTrail.record``).
        ca_changes: the CA rotation steps this node knows (kept by RevocationSync).
        learn_now: has this node take in what the log holds now (after a commit).
    """

    def __init__(
        self,
        *,
        config: NodeConfig,
        identity: NodeIdentity,
        store: Store,
        events: EventLog,
        local: LocalNode,
        deny_list: DenyList,
        commit: Callable[[Command], Awaitable[None]],
        view: ClusterView,
        consensus: ConsensusRunner,
        membership: MembershipRunner,
        transport: PeerTransport,
        peer_client: PeerClient,
        on_local_change: Callable[[], None],
        record_audit: Callable[[AuditEntry], Awaitable[None]],
        ca_changes: CaChanges,
        learn_now: Callable[[], Awaitable[None]],
    ) -> None:
        self._config = config
        self._name = identity.name
        self._store = store
        self._local = local
        self._view = view
        self._consensus = consensus
        self._transport = transport
        self._peer_client = peer_client
        self._on_local_change = on_local_change
        self._record_audit = record_audit
        self._commit = commit
        self._ca_changes = ca_changes
        self._learn_now = learn_now
        self._base_anchors = identity.bundle.ca_certificates
        self._ignored_reported: tuple[int, ...] = ()
        self._starting = asyncio.Lock()
        """One start at a time on this node (it holds the signing key)."""
        self._trust_changed = asyncio.Event()
        self._trust_changed.set()  # take in the steps kept from before a restart
        ca_changes.add_listener(lambda added: self._trust_changed.set())
        passphrase = ca_passphrase(config.ca_passphrase_file)
        self._rotation_keys = RotationKeys(config.ca_dir, passphrase)
        local.ca_fingerprint = identity.bundle.ca_fingerprint

        def is_voter(name: str) -> bool:
            return name in consensus.status().voters

        def name_in_use(name: str) -> bool:
            return membership.member(name) is not None

        holders = self._holders
        self.certificates = ServerCertificates(identity.bundle)
        self._client = TrustClient(lambda: self.certificates.bundle)
        self.enrollment = Enrollment(
            ca=identity.ca,
            store=store,
            events=events,
            join_port=config.advertise_join_address.port,
            default_token_ttl=timedelta(seconds=config.join_token_ttl_seconds),
            node_certificate_days=config.node_certificate_days,
            user_certificate_days=config.user_certificate_days,
            deny_list=deny_list,
            tokens=ReplicatedTokenLedger(commit),
            ca_fingerprint=identity.bundle.ca_fingerprint,
            relay=self._relay_user_certificate,
            name_in_use=name_in_use,
            anchors=lambda: self.trust().anchors_pem,
            record_user=self._record_user_certificate,
        )
        self.servicer = TrustServicer(
            enrollment=self.enrollment,
            is_voter=is_voter,
            start_rotation=lambda by: self.start_rotation(by=by),
        )
        self._custody = CaCustody(
            ca_dir=config.ca_dir,
            ca_fingerprint=lambda: self.enrollment.signing_fingerprint,
            holds=lambda: self.enrollment.ca is not None,
            is_voter=lambda: is_voter(self._name),
            holders=holders,
            fetch=self._client.fetch_ca_key,
            adopt=self._adopt,
            passphrase=passphrase,
            interval=config.ca_custody_interval_seconds,
        )
        addresses = sorted({config.listen.host, config.advertise_address.host})
        self.renewer = CertificateRenewer(
            identity_path=config.identity_path,
            current=lambda: self.certificates.bundle,
            signers=self._signers,
            addresses=addresses,
            on_renewed=self._renewed,
            fraction=config.cert_renew_fraction,
            check_seconds=config.cert_renew_check_seconds,
            outdated=self._outdated,
            finish=self._finish_renewal,
        )
        self._join_server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Reserves this node's name and, on a CA holder, opens the join listener."""
        if self.enrollment.ca is not None:
            await self.enrollment.reserve_own_name(self._name)
            await self._open_join_listener()

    async def run(self) -> None:
        """Until cancelled: fetch the CA key once a voter, renew the certificate."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._custody.run())
            tasks.create_task(self.renewer.run())
            tasks.create_task(self._follow_rotations())

    async def close(self, grace: float) -> None:
        if self._join_server is not None:
            await self._join_server.stop(grace)

    async def _open_join_listener(self) -> None:
        if self._join_server is not None:
            return
        server = build_join_server(
            listen=self._config.effective_join_listen,
            bundle=self.certificates.bundle,
            join=JoinServicer(
                enrollment=self.enrollment, record_audit=self._record_audit, local=self._local
            ),
            certificates=self.certificates,
        )
        await server.start()
        self._join_server = server
        self._local.join_address = self._config.advertise_join_address

    async def _adopt(self, ca: CertificateAuthority) -> None:
        self.enrollment.adopt_ca(ca)
        self._local.holds_ca = True
        try:
            await self._open_join_listener()
        except Exception as exc:  # the key still signs renewals and users
            _log.error(
                "cannot open the join listener: %s", exc, extra={"event": "ca.join_listener"}
            )
        self._on_local_change()

    # ---------------------------------------------------------------- renewal

    def _signers(self) -> list[Signer]:
        signers: list[Signer] = []
        if self.enrollment.ca is not None:

            async def local(csr: bytes, addresses: Sequence[str]) -> IssuedCertificate:
                return await self.enrollment.renew_node_certificate(
                    name=self._name, csr_pem=csr, addresses=addresses
                )

            signers.append(local)
        for address in self._holders():

            async def remote(
                csr: bytes, addresses: Sequence[str], at: str = address
            ) -> IssuedCertificate:
                return await self._client.renew(at, csr, addresses)

            signers.append(remote)
        return signers

    async def _renewed(self, bundle: IdentityBundle) -> None:
        grace = retire_grace_seconds(self.certificates.bundle)
        self.certificates.update(bundle)
        self._transport.use_identity(bundle, retire_after=grace)
        self._peer_client.use_identity(bundle)
        if self._local.ca_fingerprint != bundle.ca_fingerprint:
            self._local.ca_fingerprint = bundle.ca_fingerprint
            self._on_local_change()

    # ---------------------------------------------------------------- CA rotation

    def trust(self) -> Trust:
        """What this node trusts and presents now: its own anchors and the steps of
        the rotations it knows."""
        return trust_of(self._base_anchors, self._ca_changes.entries())

    def _outdated(self) -> bool:
        """This node's certificate is not of the CA that signs now."""
        return self.certificates.bundle.ca_fingerprint != self.trust().signing_fingerprint

    def _finish_renewal(self, bundle: IdentityBundle) -> IdentityBundle:
        """A renewed certificate with what this node trusts and presents.

        Raises:
            ValueError: the signer's CA is not the one that signs now (a holder that
                has not followed the rotation yet: the next holder is asked).
        """
        trust = self.trust()
        if not _issued_by(bundle.certificate_pem, trust):
            raise ValueError(
                f"the renewal was not signed by the CA that signs now "
                f"({trust.signing_fingerprint[:16]}...)"
            )
        return bundle.with_trust(trust.anchors_pem, trust.intermediate_pem)

    async def _follow_rotations(self) -> None:
        """Until cancelled: take in the rotation steps as they arrive."""
        while True:
            await self._trust_changed.wait()
            self._trust_changed.clear()
            try:
                await self.follow_rotation()
            except Exception:  # a failure here must not end the node's other duties
                _log.exception("could not take in a CA rotation step")
                await asyncio.sleep(1.0)
                self._trust_changed.set()

    async def follow_rotation(self) -> None:
        """Makes this node trust, hold and present what the known steps say."""
        trust = self.trust()
        if trust.ignored and trust.ignored != self._ignored_reported:
            self._ignored_reported = trust.ignored
            _log.error(
                "ignoring CA rotation steps %s: they do not check out (an addition not "
                "cross-signed by the CA that signs, or a retirement of the CA that signs)",
                list(trust.ignored),
                extra={"event": "trust.ca_change_ignored"},
            )
        dropped = self.enrollment.follow_signing(trust.signing_fingerprint)
        if dropped is not None:
            self._local.holds_ca = False
            await asyncio.to_thread(self._rotation_keys.set_aside, dropped)
            self._on_local_change()
        await asyncio.to_thread(self._rotation_keys.forget_retired, set(trust.fingerprints))
        if self.enrollment.ca is None:
            successor = await asyncio.to_thread(
                self._rotation_keys.pending, trust.signing_fingerprint
            )
            if successor is not None:
                await asyncio.to_thread(self._rotation_keys.promote, successor)
                await self._adopt(successor)
        current = self.certificates.bundle
        issuer = current.ca_fingerprint
        if issuer not in trust.fingerprints:
            _log.error(
                "this node's certificate is of lab CA %s..., which the cluster no longer "
                "trusts: the other nodes refuse it; start it again with a new join token",
                issuer[:16],
                extra={"event": "trust.own_ca_retired"},
            )
            return
        presented = trust.intermediate_pem if issuer == trust.signing_fingerprint else b""
        if (current.ca_certificate_pem, current.intermediate_pem) != (
            trust.anchors_pem,
            presented,
        ):
            updated = current.with_trust(trust.anchors_pem, presented)
            await asyncio.to_thread(updated.write, self._config.identity_path)
            await self._renewed(updated)
            _log.info(
                "trusting %d lab CA(s); CA %s... signs",
                len(trust.fingerprints),
                trust.signing_fingerprint[:16],
                extra={"event": "trust.anchors_changed"},
            )
        if issuer != trust.signing_fingerprint:
            self.renewer.wake()

    async def start_rotation(self, *, by: str) -> trust_pb2.CaChange:
        """Starts a CA rotation here when this node holds the signing key, else has a
        holder start it.

        Raises:
            FailedPreconditionError: a rotation is under way.
            PeerRefusedError, UnavailableError: no holder started it.
        """
        trust = self.trust()
        if trust.overlap:
            raise FailedPreconditionError(
                f"a CA rotation is under way (CA {trust.signing_fingerprint[:16]}... signs "
                "since it started): finish it first (`murmur ca rotate finish`)"
            )
        ca = self.enrollment.ca
        if ca is None:
            return await self._client.start_ca_rotation(self._holders(), requested_by=by)
        async with self._starting:
            return await self._start_here(ca, by=by)

    async def _start_here(self, ca: CertificateAuthority, *, by: str) -> trust_pb2.CaChange:
        if self.trust().overlap:
            raise FailedPreconditionError("a CA rotation is under way: finish it first")
        successor, cross = await asyncio.to_thread(self._rotation_keys.prepare, ca)
        at_us = time.time_ns() // 1000
        await self._commit(AddTrustedCa(successor.certificate_pem, cross, by, at_us))
        await self._learn_now()  # on a voter that applied it already: follow it now
        return trust_pb2.CaChange(
            fingerprint=successor.fingerprint,
            certificate_pem=successor.certificate_pem,
            cross_certificate_pem=cross,
            by=by,
            at_us=at_us,
        )

    async def rotate(
        self, request: cluster_pb2.RotateCaRequest, by: str
    ) -> cluster_pb2.RotateCaResponse:
        """An admin's ``murmur ca rotate start|finish``.

        Raises:
            InvalidArgumentError: no step named.
            As ``start_rotation`` and ``finish_rotation``.
        """
        if request.step == cluster_pb2.RotateCaRequest.STEP_START:
            changes = [await self.start_rotation(by=by)]
        elif request.step == cluster_pb2.RotateCaRequest.STEP_FINISH:
            changes = await self.finish_rotation(by=by, force=request.force)
        else:
            raise InvalidArgumentError("step must be start or finish")
        return cluster_pb2.RotateCaResponse(changes=changes, answered_by=self._name)

    async def finish_rotation(self, *, by: str, force: bool) -> list[trust_pb2.CaChange]:
        """Retires every CA but the signing one.

        Raises:
            FailedPreconditionError: no rotation is under way, or (without ``force``)
                a live node still presents a certificate of another CA.
        """
        trust = self.trust()
        if not trust.overlap:
            raise FailedPreconditionError("no CA rotation is under way (`murmur ca rotate start`)")
        lagging = sorted(
            node.name
            for node in self._view.nodes()
            if node.ca_fingerprint != trust.signing_fingerprint and self._view.address_of(node.name)
        )
        if lagging and not force:
            raise FailedPreconditionError(
                f"node(s) {', '.join(lagging)} still present a certificate of the old CA; "
                "they renew within seconds while a holder of the new key is reachable "
                "(`murmur ca status`), or pass --force: they will be refused until they "
                "join again"
            )
        committed: list[trust_pb2.CaChange] = []
        for fingerprint in trust.fingerprints:
            if fingerprint == trust.signing_fingerprint:
                continue
            at_us = time.time_ns() // 1000
            await self._commit(RetireCa(fingerprint, by, at_us))
            committed.append(
                trust_pb2.CaChange(fingerprint=fingerprint, retired=True, by=by, at_us=at_us)
            )
        await self._learn_now()
        return committed

    def _holders(self) -> list[str]:
        """Other nodes that may hold the CA key: those that say so, then the voters."""
        found: list[str] = []
        for node in self._view.nodes():
            if node.holds_ca and node.name != self._name and self._view.address_of(node.name):
                found.append(node.address)
        for name in sorted(self._consensus.status().voters):
            address = self._view.address_of(name) if name != self._name else ""
            if address and address not in found:
                found.append(address)
        return found

    # ------------------------------------------------------------- user certificates

    async def _record_user_certificate(self, issued: CertificateIdentity, issued_by: str) -> None:
        """Commits a user certificate this node signed to the control log.

        While an upgrade is under way (a node that does not know the record yet) the
        certificate is issued unrecorded, as before this record existed: refusing
        ``murmur user add`` until every node is upgraded would cost more than a line
        missing from ``murmur user list`` (the event log and the audit trail still
        hold the issuance).
        """
        command = RecordUserCertificate(
            name=issued.name,
            role=ROLE_TO_PROTO[issued.role],
            serial=issued.serial,
            not_before_us=int(issued.not_before.timestamp() * 1_000_000),
            not_after_us=int(issued.not_after.timestamp() * 1_000_000),
            issued_by=issued_by,
            signed_by=self._name,
        )
        try:
            await self._commit(command)
        except UpgradeInProgressError as exc:
            _log.warning(
                "user certificate %s (serial %s) issued unrecorded: %s",
                issued.name,
                issued.serial,
                exc,
                extra={"event": "user.unrecorded", "user": issued.name},
            )

    async def _relay_user_certificate(
        self, name: str, role: Role, csr_pem: bytes, ttl_days: int, requested_by: str
    ) -> IssuedCertificate:
        issued = await self._client.issue_user_certificate(
            self._holders(),
            name=name,
            role=role,
            csr_pem=csr_pem,
            ttl_days=ttl_days,
            requested_by=requested_by,
        )
        if not _issued_by(issued.certificate_pem, self.trust()):
            raise UnavailableError(
                "the CA holder that answered has not taken in the CA rotation yet; "
                "try again in a few seconds"
            )
        return issued


def _issued_by(certificate_pem: bytes, trust: Trust) -> bool:
    """Whether the CA that signs now (per ``trust``) issued the certificate: a CA
    holder that has not followed a rotation yet still signs with the old one."""
    if trust.signing_certificate is None:
        return False
    try:
        leaf = x509.load_pem_x509_certificate(certificate_pem)
        leaf.verify_directly_issued_by(trust.signing_certificate)
    except Exception:  # unparseable, another issuer, a signature that fails
        return False
    return True


def retire_grace_seconds(old: IdentityBundle, now: datetime | None = None) -> float:
    """How long channels opened with ``old`` may still carry their calls: until a
    minute before it expires (at least 15 s)."""
    moment = now or datetime.now(UTC)
    return max(15.0, (old.identity.not_after - moment).total_seconds() - 60.0)
