"""Nodes made of the daemon's own objects, wired as node/daemon.py wires them, in
this test's event loop: a real SQLite store, gossip (``MembershipRunner``), Raft
(``ConsensusRunner``), the voter manager, the replicated queue (``ClusterJobs``),
the cluster view, and the servicers (``PeerServicer``, ``ClusterServicer``), talking
over a :class:`~tests.support.memory_transport.MemoryNetwork` instead of gRPC.

What a node here does not run: GPUs other than simulated ones, runtimes and runs
(no ``RunExecutor``: nothing is placed or started), the leader's duties, a CA (its
enrollment holds none), the gRPC servers and their interceptors. The subprocess
clusters (tests/support/nodes.py) cover those.

Gossip runs about 5x faster than the daemon's, Raft with more room for a stalled
loop (see :data:`GOSSIP`, :data:`ELECTION`), and every wait is a condition polled
under a generous deadline (:func:`eventually`), never a sleep: on a loaded machine
a step may take ten times as long as on an idle one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TypeVar, cast

from murmur.node.agent.datasets import DatasetCatalog
from murmur.node.agent.executor import RunExecutor
from murmur.node.agent.gpus import open_gpu_probe
from murmur.node.api.peer_client import PeerClient
from murmur.node.api.services.cluster import ClusterServicer
from murmur.node.api.services.peer import PeerServicer
from murmur.node.config import HostPort
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.leadership import (
    Leadership,
    known_leadership,
    raft_leadership,
)
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.voter_manager import VoterManager
from murmur.node.control.consensus.voter_policy import VoterPolicyConfig
from murmur.node.control.consensus.wire import entry_to_record
from murmur.node.control.drain import NodeDrain
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.job_archive import JobArchive
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
from murmur.node.control.queue.protocol_gate import ProtocolGate
from murmur.node.control.queue.state import ControlState
from murmur.node.control.raft import ElectionConfig, EntryKind, LogEntry
from murmur.node.event_log import EventLog
from murmur.node.gossip import GossipConfig
from murmur.node.identity.enrollment import Enrollment
from murmur.node.local_node import LocalNode
from murmur.node.membership import GRPC_PIGGYBACK_BYTES, MembershipRunner, encode_meta
from murmur.node.membership.transport import PeerTransport
from murmur.storage import Store
from tests.support.memory_transport import MemoryNetwork, MemoryTransport

T = TypeVar("T")

GOSSIP = GossipConfig(
    probe_interval=0.25,
    probe_timeout=0.15,
    gossip_interval=0.05,
    push_pull_interval=2.0,
    reconnect_interval=0.0,
    join_retry_interval=0.2,
    suspicion_check_lead=0.2,
    refused_suspicion_timeout=0.5,
    max_piggyback_bytes=GRPC_PIGGYBACK_BYTES,
)
"""Gossip about 5x faster than the daemon's, with a probe timeout that a busy
machine's slow turn of the loop does not miss."""

ELECTION = ElectionConfig(
    heartbeat_interval=0.1,
    election_timeout_min=0.6,
    election_timeout_max=1.2,
    lease_timeout=0.6,
)
"""Raft with more room than the daemon's between a heartbeat and a deposition (six
rounds, not two), so that a stalled test process does not change leaders."""

VOTER_POLICY = VoterPolicyConfig(stabilization_seconds=0.3, max_voters=3, catch_up_lag=50)
"""The voter manager's policy with a short stabilization time."""


async def eventually(check: Callable[[], T | None], *, within: float = 15.0, what: str) -> T:
    """Poll ``check`` until it returns something truthy; returns that. Fails after
    ``within`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within:g} s for {what}")
        await asyncio.sleep(0.02)
    return result


@dataclass(eq=False)
class InProcessNode:
    """One node's objects, as the daemon holds them."""

    name: str
    address: str
    store: Store
    local: LocalNode
    transport: MemoryTransport
    membership: MembershipRunner
    view: ClusterView
    control: ControlState
    consensus: ConsensusRunner
    voter_manager: VoterManager
    cluster_jobs: ClusterJobs
    gate: ProtocolGate
    peer: PeerServicer
    cluster: ClusterServicer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class InProcessCluster:
    """Makes nodes on one memory network, each with its store under ``root``.

    Args:
        root: a directory for the nodes' data (a test's ``tmp_path``).
        manage_voters: run every node's voter manager loop (only the leader's acts);
            off, the voters are whatever the nodes start with.
    """

    def __init__(self, root: Path, *, manage_voters: bool = False) -> None:
        self.root = root
        self.network = MemoryNetwork()
        self.manage_voters = manage_voters
        self.nodes: dict[str, InProcessNode] = {}
        self._hosts: dict[str, int] = {}

    def address_of(self, name: str) -> str:
        host = self._hosts.setdefault(name, len(self._hosts) + 1)
        return f"10.0.0.{host}:7070"

    async def start(
        self,
        name: str,
        *,
        founder: bool = False,
        voters: Collection[str] = (),
        seeds: Collection[str] = (),
        protocol_level: int = PROTOCOL_LEVEL,
    ) -> InProcessNode:
        """Start node ``name`` (again, from its store, if it ran before).

        Args:
            founder: it founded the cluster: with an empty log it bootstraps as the
                lone voter (the daemon's node that holds the CA).
            voters: with an empty log, start with these voters instead (one VOTERS
                entry naming them, as if the voter manager had grown the set).
            seeds: names of nodes to join through (gossip); none for the first.
            protocol_level: the control protocol level it speaks (an older one is what
                the daemon's ``simulate_protocol_level`` runs, with a version saying so).
        """
        address = self.address_of(name)
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        store = await Store.open(data / "node.sqlite")
        if voters and not (await store.load_raft()).entries:
            entry = LogEntry(term=0, index=1, kind=EntryKind.VOTERS, voters=frozenset(voters))
            await store.save_raft(entries=[entry_to_record(entry)])
        host, port = address.rsplit(":", 1)
        local = LocalNode(
            name=name,
            address=HostPort(host, int(port)),
            join_address=None,
            holds_ca=founder,
            gpu_probe=open_gpu_probe(simulate="2xA100-80GB"),
            labels={"zone": "test"},
            version=f"0.1.0+level-{protocol_level}",
            protocol_level=protocol_level,
        )
        events = EventLog(store)
        transport = self.network.transport(name)
        membership = MembershipRunner(
            name=name,
            advertise_address=address,
            transport=transport,
            config=GOSSIP,
            seeds=[self.address_of(seed) for seed in seeds],
            meta_source=lambda: encode_meta(local.describe()),
            meta_refresh_interval=0.2,
        )
        view = ClusterView(local, membership)

        def member_address(peer: str) -> str | None:
            member = membership.member(peer)
            return member.address if member is not None else None

        def consensus_changed() -> None:
            membership.request_meta_refresh()
            local.updates.publish(local.describe())

        control = ControlState(protocol_level=protocol_level)
        consensus = ConsensusRunner(
            name=name,
            advertise_address=address,
            store=store,
            transport=transport,
            address_of=member_address,
            state_machine=control,
            config=ELECTION,
            bootstrap=founder,
            on_change=consensus_changed,
        )
        await consensus.start()
        local.election = consensus.election_facts
        local.upgrade_needed = lambda: consensus.halted
        gate = ProtocolGate(
            name=name,
            version=local.version,
            level=protocol_level,
            control=control,
            consensus=consensus,
            membership=membership,
        )
        consensus.admit = gate.admit
        voter_manager = VoterManager(
            consensus=consensus,
            membership=membership,
            config=VOTER_POLICY,
            may_apply_log=gate.may_apply_log,
        )

        def leadership() -> Leadership:
            status = consensus.status()
            return raft_leadership(status, view.address_of) or known_leadership(
                status, view.nodes()
            )

        archive = JobArchive(store)
        cluster_jobs = ClusterJobs(
            consensus=consensus,
            control=control,
            # ClusterJobs is typed on PeerTransport; it uses node_stub and cluster_stub.
            peers=cast(PeerTransport, transport),
            leadership=leadership,
            waiting=dict,
            archive=archive,
            gate=gate,
        )
        consensus.on_applied = cluster_jobs.applied
        drain = NodeDrain(store=store, local=local, events=events, replicate=cluster_jobs.commit)
        await drain.load()
        peer = PeerServicer(
            view=view,
            drain=drain,
            membership=membership,
            consensus=consensus,
            cluster_jobs=cluster_jobs,
        )
        cluster = ClusterServicer(
            view=view,
            store=store,
            events=events,
            enrollment=Enrollment(
                ca=None,
                store=store,
                events=events,
                join_port=7071,
                default_token_ttl=timedelta(hours=1),
                node_certificate_days=1,
                user_certificate_days=1,
            ),
            ca_fingerprint="",
            # Nothing here runs jobs or reads datasets and other nodes' live facts.
            executor=cast(RunExecutor, None),
            cluster_jobs=cluster_jobs,
            path_roots=(PurePosixPath("/"),),
            datasets=cast(DatasetCatalog, None),
            drain=drain,
            membership=membership,
            peers=cast(PeerClient, None),
            peer_channels=cast(PeerTransport, transport),
            consensus=consensus,
        )
        node = InProcessNode(
            name=name,
            address=address,
            store=store,
            local=local,
            transport=transport,
            membership=membership,
            view=view,
            control=control,
            consensus=consensus,
            voter_manager=voter_manager,
            cluster_jobs=cluster_jobs,
            gate=gate,
            peer=peer,
            cluster=cluster,
        )
        self.nodes[name] = node
        self.network.serve(address, node=peer, cluster=cluster)
        node.tasks += [
            asyncio.create_task(membership.run(), name=f"{name}-gossip"),
            asyncio.create_task(consensus.run(), name=f"{name}-raft"),
            asyncio.create_task(view.relay(), name=f"{name}-view"),
            asyncio.create_task(archive.run(), name=f"{name}-archive"),
        ]
        if self.manage_voters:
            node.tasks.append(asyncio.create_task(voter_manager.run(), name=f"{name}-voters"))
        async with asyncio.timeout(10):
            await membership.join()
        return node

    async def stop(self, name: str) -> None:
        """Kill node ``name``: it stops answering at once (its port refuses), its
        loops end, its store closes; what it wrote stays for :meth:`start`."""
        node = self.nodes.pop(name)
        await self.network.stop(node.address)
        for task in node.tasks:
            task.cancel()
        await asyncio.gather(*node.tasks, return_exceptions=True)
        await node.cluster_jobs.close()
        await node.transport.close()
        await node.store.close()

    async def close(self) -> None:
        for name in list(self.nodes):
            await self.stop(name)
        await self.network.close()

    # --- what the tests wait for ------------------------------------------------------

    def leaders(self) -> list[InProcessNode]:
        return [node for node in self.nodes.values() if node.consensus.is_leader]

    async def agreed_leader(
        self, *, voters: int, within: float = 15.0, not_name: str = ""
    ) -> InProcessNode:
        """Wait until one running node leads, with ``voters`` voters, and every
        running voter names it in its term; returns it. (A node outside the voter
        set may not hear the leader: see leadership.py.)"""

        def agreed() -> InProcessNode | None:
            leaders = self.leaders()
            if len(leaders) != 1 or leaders[0].name == not_name:
                return None
            leader = leaders[0].consensus.status()
            if len(leader.voters) != voters or not leaders[0].consensus.state_is_current():
                return None
            for node in self.nodes.values():
                status = node.consensus.status()
                if node.name in leader.voters and (
                    status.term != leader.term or status.leader != leader.name
                ):
                    return None
            return leaders[0]

        return await eventually(
            agreed, within=within, what=f"one leader of {voters} voters that every voter names"
        )
