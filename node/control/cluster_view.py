"""What this node knows of the whole cluster: itself first-hand, the others by gossip.

Every ``ClusterService`` read about nodes and datasets goes through here, so the
answer is the same whichever RPC asks: this node's own NodeInfo is described
fresh (its load, its drain flag, its catalog), and every other member's is the
blob it last gossiped, with gossip's verdict on its state (alive, suspect, dead,
left; draining when the member says so itself). Without a membership runner
(a node whose gossip is not started, in some tests) the view is this node alone.

Roles are not each node's own word: every node's ``voter`` and ``leader`` flags
are set from one :class:`~murmur.node.control.consensus.leadership.Leadership`, this node's
(its Raft's voter set and leader when it votes, see
:mod:`murmur.node.control.consensus.leadership`), so a node list, a node, a status and the
watch stream all say what the status says. A dead or removed node's last word
("I vote", "I lead") is thereby never repeated.

Another node's load is as it last gossiped it: a node re-reads its facts every
``load_gossip_interval_seconds`` and sends a change in its GPU allocation (runs
started or ended) out at once at that read, so the counts of other nodes trail
``murmur node show`` (which asks the node) by at most that interval plus a
gossip round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from murmur.node.broadcast import Broadcaster
from murmur.node.control.consensus.leadership import DOWN_STATES as DOWN_STATES
from murmur.node.control.consensus.leadership import (
    Leadership,
    known_leadership,
    mark_roles,
    raft_leadership,
)
from murmur.node.local_node import LocalNode
from murmur.node.membership.runner import ClusterMember, MembershipRunner, node_state
from murmur.v1 import types_pb2

_Roles = tuple[bool, bool, int]
"""(voter, leader, term) of a node: what a watcher is re-sent when it changes."""


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
        self._leadership: Leadership | None = None
        """As of the last look at every node (what a non-voter's roles come from
        between two such looks)."""
        self._role_facts: dict[str, tuple[_Roles, int]] = {}
        """Per other node, what a non-voter's leadership reads of it: its own
        (voter, leader, term) and its state, as last relayed."""
        self._shown_roles: dict[str, _Roles] = {}
        self._shown_allocation: tuple[int, int] | None = None

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
        return self.snapshot()[0]

    def snapshot(self) -> tuple[list[types_pb2.NodeInfo], Leadership]:
        """Every node known, by name, and the leadership their roles were set from:
        one look, so that a status's leader and voters match its node list."""
        found = {self._local.name: self.describe_local()}
        if self._membership is not None:
            for member in self._membership.members():
                if member.name != self._local.name:
                    found[member.name] = _member_info(member)
        nodes = [found[name] for name in sorted(found)]
        leadership = known_leadership(self._local.election(), nodes)
        mark_roles(nodes, leadership)
        self._leadership = leadership
        return nodes, leadership

    def leadership(self) -> Leadership:
        """Who leads, in which term, with which voters, as this node knows it: a
        voter's own Raft (cheap), else Raft and gossip together (every node)."""
        own = raft_leadership(self._local.election(), self.address_of)
        return own if own is not None else self.snapshot()[1]

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
            info = self.describe_local()
        else:
            member = self._membership.member(name) if self._membership is not None else None
            if member is None:
                return None
            info = _member_info(member)
        mark_roles([info], self.leadership())
        return info

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

    # --- service replicas ----------------------------------------------------------------

    def replica_endpoints(self) -> dict[str, types_pb2.ServiceEndpoint]:
        """Every service replica's endpoint that a node not down gossips, by job id:
        where it listens and whether its readiness probe passes."""
        return {
            endpoint.job_id: endpoint
            for info in self.nodes()
            if info.state not in DOWN_STATES
            for endpoint in info.endpoints
        }

    # --- live updates ------------------------------------------------------------------

    async def relay(self) -> None:
        """Publish to :attr:`updates` every change of this node's facts and every
        membership change, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._relay_local())
            if self._membership is not None:
                tasks.create_task(self._relay_membership(self._membership))

    async def _relay_local(self) -> None:
        """This node changed (a load sample, runs took or freed GPUs, a drain, a Raft
        change): publish it, and every other node whose role that changed."""
        async with self._local.updates.subscribe() as updates:
            while True:
                await updates.get()
                self._gossip_allocation()
                self._publish_changed(self.nodes(), always=self._local.name)

    def _gossip_allocation(self) -> None:
        """Runs took or freed GPUs here: the cluster schedules on it and shows it, so
        the next gossip read sends it out at once instead of on probe traffic."""
        allocation = self._local.allocation()
        if allocation != self._shown_allocation and self._membership is not None:
            self._membership.request_meta_refresh()
        self._shown_allocation = allocation

    async def _relay_membership(self, membership: MembershipRunner) -> None:
        async with membership.subscribe() as changes:
            async for change in changes:
                name = change.member.name
                if name == self._local.name:
                    continue
                info = _member_info(change.member)
                facts = ((info.voter, info.leader, info.term), info.state)
                moved = self._role_facts.get(name) != facts
                self._role_facts[name] = facts
                own = raft_leadership(self._local.election(), self.address_of)
                if own is None and (moved or self._leadership is None):
                    # What a non-voter's leadership is read from changed: look again.
                    self._publish_changed(self.nodes(), always=name)
                    continue
                mark_roles([info], own or self._leadership or self.leadership())
                self._publish(info)

    def _publish_changed(self, nodes: Iterable[types_pb2.NodeInfo], *, always: str) -> None:
        for info in nodes:
            if info.name == always or self._shown_roles.get(info.name) != _roles(info):
                self._publish(info)

    def _publish(self, info: types_pb2.NodeInfo) -> None:
        self._shown_roles[info.name] = _roles(info)
        self.updates.publish(info)

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


def _roles(info: types_pb2.NodeInfo) -> _Roles:
    return info.voter, info.leader, info.term if info.leader else 0
