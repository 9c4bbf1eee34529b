"""What this node knows of the whole cluster: itself first-hand, the others by gossip.

Every ``ClusterService`` read about nodes and datasets goes through here, so the
answer is the same whichever RPC asks: this node's own NodeInfo is described
fresh (its load, its drain flag, its catalog), and every other member's is the
blob it last gossiped, with gossip's verdict on its state (alive, suspect, dead,
left; draining when the member says so itself). Without a membership runner
(a node whose gossip is not started, in some tests) the view is this node alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from node.broadcast import Broadcaster
from node.local_node import LocalNode
from node.membership.runner import ClusterMember, MembershipRunner, node_state
from proto.murmur.v1 import types_pb2

DOWN_STATES = (types_pb2.NODE_STATE_DEAD, types_pb2.NODE_STATE_LEFT)
"""Node states of a member that is gone: its GPUs and datasets count for nothing."""


class ClusterView:
    """Nodes and datasets of the cluster as this node sees them.

    Args:
        local: this node.
        membership: gossip; ``None`` for a node that runs without it.
    """

    def __init__(self, local: LocalNode, membership: MembershipRunner | None = None) -> None:
        self._local = local
        self._membership = membership
        self.updates: Broadcaster[types_pb2.NodeInfo] = Broadcaster(queue_size=4096)
        """Each node's NodeInfo when it changed (see :meth:`relay`)."""

    @property
    def local_name(self) -> str:
        return self._local.name

    # --- nodes -------------------------------------------------------------------------

    def describe_local(self) -> types_pb2.NodeInfo:
        info = self._local.describe()
        if self._membership is not None:
            info.incarnation = self._membership.incarnation
        return info

    def nodes(self) -> list[types_pb2.NodeInfo]:
        """Every node known, this one included, by name."""
        nodes = {self._local.name: self.describe_local()}
        if self._membership is not None:
            for member in self._membership.members():
                if member.name != self._local.name:
                    nodes[member.name] = _member_info(member)
        _settle_leader_claims(nodes.values())
        return [nodes[name] for name in sorted(nodes)]

    def address_of(self, name: str) -> str:
        """Where node ``name``'s API listens; empty when it is unknown or down.
        Builds no NodeInfo, unlike :meth:`nodes`: it is asked on every forwarded write."""
        if name == self._local.name:
            return str(self._local.address)
        member = self._membership.member(name) if self._membership is not None else None
        if member is None or node_state(member.state) in DOWN_STATES:
            return ""
        return member.address

    def node(self, name: str) -> types_pb2.NodeInfo | None:
        if name == self._local.name:
            return self.describe_local()
        if self._membership is None:
            return None
        member = self._membership.member(name)
        return None if member is None else _member_info(member)

    # --- datasets ----------------------------------------------------------------------

    def datasets(self, node: str = "") -> list[types_pb2.Dataset]:
        """The datasets of every node that is not down (or of ``node`` only), by name
        then node. Another node's entries are what it gossips: name, size and file
        count always; path and manifest unless its blob had to be trimmed."""
        found: list[types_pb2.Dataset] = []
        for info in self.nodes():
            if (node and info.name != node) or info.state in DOWN_STATES:
                continue
            for dataset in info.datasets:
                entry = types_pb2.Dataset()
                entry.CopyFrom(dataset)
                entry.node = info.name
                found.append(entry)
        found.sort(key=lambda d: (d.name, d.node != self._local.name, d.node))
        return found

    def dataset(self, name: str) -> types_pb2.Dataset | None:
        """The dataset ``name``: this node's copy if it has one, else another's."""
        for dataset in self.datasets():
            if dataset.name == name:
                return dataset
        return None

    # --- live updates ------------------------------------------------------------------

    async def relay(self) -> None:
        """Publish to :attr:`updates` every change of this node's facts and every
        membership change, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._relay_local())
            if self._membership is not None:
                tasks.create_task(self._relay_membership(self._membership))

    async def _relay_local(self) -> None:
        async with self._local.updates.subscribe() as updates:
            while True:
                await updates.get()
                self.updates.publish(self.describe_local())

    async def _relay_membership(self, membership: MembershipRunner) -> None:
        async with membership.subscribe() as changes:
            async for change in changes:
                if change.member.name != self._local.name:
                    self.updates.publish(_member_info(change.member))

    async def watch(self) -> AsyncIterator[types_pb2.NodeInfo]:
        """Every node now, then each change, until the caller stops."""
        async with self.updates.subscribe() as updates:
            for info in self.nodes():
                yield info
            while True:
                yield await updates.get()


def _member_info(member: ClusterMember) -> types_pb2.NodeInfo:
    """A member's NodeInfo; a member whose blob has not arrived yet (or did not
    parse) is still listed, with what gossip itself knows."""
    if member.info is not None:
        return member.info
    return types_pb2.NodeInfo(
        name=member.name,
        address=member.address,
        state=node_state(member.state),
        incarnation=member.member.incarnation,
    )


def _settle_leader_claims(nodes: Iterable[types_pb2.NodeInfo]) -> None:
    """Each node gossips whether it leads; a dead or suspect node's last word, or a
    deposed leader's not yet replaced, is stale: only the live claim of the highest
    term stands."""
    claims = [n for n in nodes if n.leader]
    live = [n for n in claims if n.state not in (*DOWN_STATES, types_pb2.NODE_STATE_SUSPECT)]
    standing = max(live, key=lambda n: n.term, default=None)
    for node in claims:
        if node is not standing:
            node.leader = False
