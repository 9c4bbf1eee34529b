"""The cluster view of every node, in this process: three voters and a node outside
the voter set, made of the daemon's objects on a memory network. Each node's view
names the same leader and voters (a voter from its own Raft, the other node from
what the nodes gossip), and after the leader is killed it shows it down and its
successor leading, and its watch says so."""

from __future__ import annotations

import asyncio
import functools

from murmur.v1 import types_pb2
from tests.node.inprocess.inprocess_cluster import InProcessCluster, InProcessNode, eventually

VOTERS = ("a", "b", "c")
DOWN = (types_pb2.NODE_STATE_DEAD, types_pb2.NODE_STATE_LEFT)


def shows(node: InProcessNode, *, leader: str, voters: set[str], nodes: set[str]) -> bool:
    """``node``'s view lists ``nodes`` and marks ``leader`` and ``voters`` alone."""
    listed = node.view.nodes()
    if {info.name for info in listed} != nodes:
        return False
    leading = [info.name for info in listed if info.leader]
    voting = {info.name for info in listed if info.voter}
    leadership = node.view.leadership()
    return (
        leading == [leader]
        and voting == voters
        and leadership.leader == leader
        and set(leadership.voters) == voters
    )


async def test_every_view_shows_one_leader_and_the_voters(cluster: InProcessCluster) -> None:
    await cluster.start("a", voters=VOTERS)
    for name in VOTERS[1:]:
        await cluster.start(name, voters=VOTERS, seeds=["a"])
    outsider = await cluster.start("d", seeds=["a"])  # no voters: never stands
    leader = await cluster.agreed_leader(voters=3)
    everyone = {*VOTERS, "d"}

    for node in cluster.nodes.values():
        await eventually(
            functools.partial(shows, node, leader=leader.name, voters=set(VOTERS), nodes=everyone),
            what=f"{node.name}'s view naming {leader.name} and the voters",
        )
    assert outsider.consensus.status().voters == frozenset(), "its Raft knows no voters"
    assert outsider.view.leadership().leader_address == leader.address
    info = outsider.view.node(leader.name)
    assert info is not None
    assert info.leader
    assert info.address == leader.address
    assert [d.index for d in info.gpus.devices] == [0, 1], "the leader's gossiped GPUs"


async def test_a_killed_leader_is_shown_down_and_its_successor_leading(
    cluster: InProcessCluster,
) -> None:
    await cluster.start("a", voters=VOTERS)
    for name in VOTERS[1:]:
        await cluster.start(name, voters=VOTERS, seeds=["a"])
    outsider = await cluster.start("d", seeds=["a"])
    old = await cluster.agreed_leader(voters=3)
    updates: list[types_pb2.NodeInfo] = []

    async def follow() -> None:
        async for info in outsider.view.watch():
            updates.append(info)

    watcher = asyncio.create_task(follow())
    await eventually(lambda: len(updates) >= 4, what="the watch's first look at every node")
    before = len(updates)

    await cluster.stop(old.name)
    new = await cluster.agreed_leader(voters=3, not_name=old.name, within=20)

    def shows_the_change(node: InProcessNode) -> bool:
        # A voter's own Raft still counts the dead voter (nothing removed it); the
        # outsider counts the live nodes that say they vote (leadership.py).
        voters = set(VOTERS) if node.name in VOTERS else set(VOTERS) - {old.name}
        gone = node.view.node(old.name)
        return (
            gone is not None
            and gone.state in DOWN
            and not gone.leader
            and shows(node, leader=new.name, voters=voters, nodes={*VOTERS, "d"})
        )

    for node in cluster.nodes.values():
        await eventually(
            functools.partial(shows_the_change, node),
            within=20,
            what=f"{node.name}'s view showing {old.name} down and {new.name} leading",
        )
    try:
        await eventually(
            lambda: (
                any(info.name == new.name and info.leader for info in updates[before:])
                and any(info.name == old.name and info.state in DOWN for info in updates[before:])
            ),
            within=20,
            what=f"the outsider's watch telling that {old.name} is down and {new.name} leads",
        )
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
