"""The daemon's wiring of the cluster's trust: no single node holds the keys.

* Enrollment with join tokens in the control log (single use cluster-wide), a
  user certificate relayed to a CA holder by a node without the key.
* The CA key sealed to the voters (node/identity/ca_custody.py): a new voter
  fetches it, and every holder opens the join listener.
* Certificate renewal (node/identity/renewal.py): the listeners serve the new
  certificate from the next handshake (node/api/tls.py), new outgoing channels use
  it, open connections and streams go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import grpc

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.api.peer_client import PeerClient
from murmur.node.api.server import build_join_server
from murmur.node.api.services.join import JoinServicer
from murmur.node.api.services.trust import TrustServicer
from murmur.node.api.tls import ServerCertificates
from murmur.node.config import NodeConfig
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.commands import Command
from murmur.node.deny_list import DenyList
from murmur.node.event_log import EventLog
from murmur.node.identity.bootstrap import NodeIdentity
from murmur.node.identity.ca_custody import CaCustody, ca_passphrase
from murmur.node.identity.enrollment import Enrollment, IssuedCertificate
from murmur.node.identity.renewal import CertificateRenewer, Signer
from murmur.node.identity.token_ledger import ReplicatedTokenLedger
from murmur.node.identity.trust_client import TrustClient
from murmur.node.local_node import LocalNode
from murmur.node.membership import MembershipRunner, PeerTransport
from murmur.storage import AuditEntry, Store

_log = logging.getLogger("murmur.node")


class ClusterTrust:
    """Enrollment, the CA key's custody, the join listener and renewal, for one node.

    Args:
        commit: commits a control command through the leader (``ClusterJobs.commit``).
        on_local_change: this node's description changed (it now holds the CA).
        record_audit: records a join in the audit trail (``AuditTrail.record``).
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
        )
        self.servicer = TrustServicer(enrollment=self.enrollment, is_voter=is_voter)
        self._custody = CaCustody(
            ca_dir=config.ca_dir,
            ca_fingerprint=identity.bundle.ca_fingerprint,
            holds=lambda: self.enrollment.ca is not None,
            is_voter=lambda: is_voter(self._name),
            holders=holders,
            fetch=self._client.fetch_ca_key,
            adopt=self._adopt,
            passphrase=ca_passphrase(config.ca_passphrase_file),
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

    async def _relay_user_certificate(
        self, name: str, role: Role, csr_pem: bytes, ttl_days: int, requested_by: str
    ) -> IssuedCertificate:
        return await self._client.issue_user_certificate(
            self._holders(),
            name=name,
            role=role,
            csr_pem=csr_pem,
            ttl_days=ttl_days,
            requested_by=requested_by,
        )


def retire_grace_seconds(old: IdentityBundle, now: datetime | None = None) -> float:
    """How long channels opened with ``old`` may still carry their calls: until a
    minute before it expires (at least 15 s)."""
    moment = now or datetime.now(UTC)
    return max(15.0, (old.identity.not_after - moment).total_seconds() - 60.0)
