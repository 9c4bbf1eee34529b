"""Roles and GPU counts as the cluster view hands them to every reader
(node/control/cluster_view.py): one leadership for a status, a node list, a node and the
watch stream; a dead or removed node's last word about its role is not repeated;
this node's GPU allocation goes out when it changes, not at the next sample."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from murmur.node.agent.gpus import open_gpu_probe
from murmur.node.broadcast import Broadcaster
from murmur.node.config import HostPort
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusStatus
from murmur.node.control.raft import Role
from murmur.node.gossip import EventKind, Member, MemberState
from murmur.node.local_node import LocalNode
from murmur.node.membership import ClusterMember, MembershipChange, MembershipRunner
from murmur.v1 import types_pb2

_STATES = {
    MemberState.ALIVE: types_pb2.NODE_STATE_ALIVE,
    MemberState.SUSPECT: types_pb2.NODE_STATE_SUSPECT,
    MemberState.DEAD: types_pb2.NODE_STATE_DEAD,
    MemberState.LEFT: types_pb2.NODE_STATE_LEFT,
}


@dataclass
class FakeMembership:
    """The few things the cluster view asks of gossip."""

    members_by_name: dict[str, ClusterMember] = field(default_factory=dict)
    changes: Broadcaster[MembershipChange] = field(default_factory=Broadcaster)
    refreshes: int = 0
    incarnation: int = 1

    def set(
        self,
        name: str,
        state: MemberState = MemberState.ALIVE,
        *,
        voter: bool = False,
        leader: bool = False,
        term: int = 0,
        gpus_free: int = 0,
    ) -> None:
        info = types_pb2.NodeInfo(
            name=name,
            address=f"{name}:7070",
            state=_STATES[state],
            voter=voter,
            leader=leader,
            term=term,
            load=types_pb2.NodeLoad(gpus_free=gpus_free),
        )
        member = ClusterMember(Member(name, f"{name}:7946", 1, state, 0.0), info)
        self.members_by_name[name] = member
        self.changes.publish(MembershipChange(EventKind.META_UPDATED, member, 0.0))

    def members(self) -> list[ClusterMember]:
        return [self.members_by_name[name] for name in sorted(self.members_by_name)]

    def member(self, name: str) -> ClusterMember | None:
        return self.members_by_name.get(name)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[MembershipChange]]:
        async with self.changes.subscribe() as queue:

            async def stream() -> AsyncIterator[MembershipChange]:
                while True:
                    yield await queue.get()

            yield stream()

    def request_meta_refresh(self) -> None:
        self.refreshes += 1


@dataclass
class FakeRaft:
    status: ConsensusStatus

    def __call__(self) -> ConsensusStatus:
        return self.status

    def set(self, *, term: int, leader: str | None, voters: set[str]) -> None:
        role = Role.LEADER if leader == self.status.name else Role.FOLLOWER
        self.status = ConsensusStatus(
            name=self.status.name,
            role=role,
            term=term,
            leader=leader,
            voters=frozenset(voters),
            commit_index=0,
            last_index=0,
        )


def cluster(
    *, term: int, leader: str | None, voters: set[str]
) -> tuple[ClusterView, LocalNode, FakeMembership, FakeRaft, dict[int, str]]:
    holders: dict[int, str] = {}
    local = LocalNode(
        name="m1",
        address=HostPort("127.0.0.1", 7070),
        join_address=None,
        holds_ca=False,
        gpu_probe=open_gpu_probe(simulate="4xA100-80GB"),
        labels={},
        gpu_holders=lambda: dict(holders),
        active_runs=lambda: len(set(holders.values())),
    )
    raft = FakeRaft(ConsensusStatus("m1", Role.FOLLOWER, 0, None, frozenset(), 0, 0))
    raft.set(term=term, leader=leader, voters=voters)
    local.election = raft
    gossip = FakeMembership()
    view = ClusterView(local, cast(MembershipRunner, gossip))
    return view, local, gossip, raft, holders


def roles(nodes: list[types_pb2.NodeInfo]) -> dict[str, str]:
    return {n.name: "leader" if n.leader else ("voter" if n.voter else "") for n in nodes}


def test_list_and_status_take_roles_from_this_voters_raft_not_from_last_words() -> None:
    # gpu3 was removed (left) while it was a voter; m2 led term 12 and died.
    view, _, gossip, _, _ = cluster(term=13, leader="m4", voters={"m1", "m2", "m4"})
    gossip.set("m2", MemberState.DEAD, voter=True, leader=True, term=12)
    gossip.set("gpu3", MemberState.LEFT, voter=True, term=11)
    gossip.set("m4", voter=False, term=12)  # its own word lags its election
    nodes, leadership = view.snapshot()
    assert (leadership.leader, leadership.term) == ("m4", 13)
    assert leadership.voters == ("m1", "m2", "m4")
    assert roles(nodes) == {"gpu3": "", "m1": "voter", "m2": "voter", "m4": "leader"}
    assert roles(view.nodes()) == roles(nodes)
    m2, gpu3 = view.node("m2"), view.node("gpu3")
    assert m2 is not None
    assert gpu3 is not None
    assert (m2.voter, m2.leader, gpu3.voter) == (True, False, False)


def test_during_an_election_no_node_is_marked_leader() -> None:
    view, _, gossip, _, _ = cluster(term=13, leader=None, voters={"m1", "m2", "m3"})
    gossip.set("m2", voter=True, leader=True, term=12)  # not yet known dead
    gossip.set("m3", voter=True, term=13)
    nodes, leadership = view.snapshot()
    assert (leadership.leader, leadership.term) == ("", 13)
    assert not any(n.leader for n in nodes)


async def next_update(updates: asyncio.Queue[types_pb2.NodeInfo]) -> types_pb2.NodeInfo:
    return await asyncio.wait_for(updates.get(), timeout=2)


async def test_the_watch_stream_is_told_when_the_leader_changes() -> None:
    view, local, gossip, raft, _ = cluster(term=12, leader="m2", voters={"m1", "m2", "m3"})
    gossip.set("m2", voter=True, leader=True, term=12)
    gossip.set("m3", voter=True, term=12)
    async with asyncio.TaskGroup() as tasks:
        relay = tasks.create_task(view.relay())
        await asyncio.sleep(0.05)  # the relay subscribes to this node's updates
        async with view.updates.subscribe() as updates:
            local.updates.publish(local.describe())  # a sample: everything as it is
            seen = {}
            while len(seen) < 3:
                info = await next_update(updates)
                seen[info.name] = info
            assert roles(list(seen.values())) == {"m1": "voter", "m2": "leader", "m3": "voter"}

            # m2 dies; this node's Raft moves to term 13 and then follows m3. The stream
            # must say m2 no longer leads though gossip has not told of its death yet.
            raft.set(term=13, leader=None, voters={"m1", "m2", "m3"})
            local.updates.publish(local.describe())
            changed = {}
            while "m2" not in changed:
                info = await next_update(updates)
                changed[info.name] = info
            assert not changed["m2"].leader
            raft.set(term=13, leader="m3", voters={"m1", "m2", "m3"})
            local.updates.publish(local.describe())
            changed = {}
            while "m3" not in changed:
                info = await next_update(updates)
                changed[info.name] = info
            assert changed["m3"].leader
            assert changed["m3"].term == 13

            # Gossip then brings m2's death with its stale "I lead": not repeated.
            gossip.set("m2", MemberState.DEAD, voter=True, leader=True, term=12)
            info = await next_update(updates)
            while info.name != "m2":
                info = await next_update(updates)
            assert (info.state, info.leader, info.voter) == (types_pb2.NODE_STATE_DEAD, False, True)
        relay.cancel()


async def test_runs_taking_gpus_are_published_and_gossiped_at_once() -> None:
    view, local, gossip, _, holders = cluster(term=1, leader="m1", voters={"m1"})
    async with asyncio.TaskGroup() as tasks:
        relay = tasks.create_task(view.relay())
        await asyncio.sleep(0.05)  # the relay subscribes to this node's updates
        async with view.updates.subscribe() as updates:
            telemetry = tasks.create_task(local.run_telemetry(interval_seconds=3600))
            first = await next_update(updates)  # the first sample
            assert first.load.gpus_free == 4
            refreshes = gossip.refreshes
            holders.update({0: "job-a", 1: "job-a", 2: "job-b", 3: "job-b"})
            # What the run executor does once runs took them (on_allocation_change):
            # published at once, not at the next sample (an hour away).
            assert local.allocation_changed()
            assert not local.allocation_changed()  # nothing new since
            info = await next_update(updates)
            assert (info.name, info.load.gpus_free, info.load.runs_active) == ("m1", 0, 2)
            await asyncio.sleep(0)
            assert gossip.refreshes == refreshes + 1  # sent out urgently at the next read
            node = view.node("m1")
            assert node is not None
            assert node.load.gpus_free == 0
            telemetry.cancel()
        relay.cancel()
