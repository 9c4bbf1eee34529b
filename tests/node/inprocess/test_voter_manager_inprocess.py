"""The voter set managed in this process: nodes of the daemon's objects on a memory
network, with every node's voter manager running (only the leader's acts). The
founder leads alone; as nodes join, the set grows to ``max_voters`` (3) through
learners, one voter at a time (as the leader's log shows); a voter that dies is
replaced by the spare once it has been dead for the stabilization time; and
``node remove`` through a follower (ClusterService.RemoveNode, then
NodeService.ForgetVoter on the leader) takes a dead voter out at once."""

from __future__ import annotations

import itertools

import pytest

from murmur.certs import Role
from murmur.node.control.consensus import voter_manager
from murmur.node.control.consensus.wire import entries_from_records
from murmur.node.control.raft import EntryKind
from murmur.node.gossip import MemberState
from murmur.v1 import cluster_pb2
from tests.node.inprocess.inprocess_cluster import (
    VOTER_POLICY,
    InProcessCluster,
    InProcessNode,
    eventually,
)


@pytest.fixture
def fast_voter_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The voter manager's round every 0.1 s instead of 0.5 s."""
    monkeypatch.setattr(voter_manager, "INTERVAL_SECONDS", 0.1)


def voters_seen_by(node: InProcessNode) -> frozenset[str]:
    return node.consensus.status().voters


@pytest.mark.usefixtures("fast_voter_steps")
async def test_the_set_grows_to_three_and_a_dead_voter_is_replaced_by_the_spare(
    cluster: InProcessCluster,
) -> None:
    cluster.manage_voters = True
    founder = await cluster.start("a", founder=True)
    assert voters_seen_by(founder) == {"a"}
    for name in ("b", "c", "d"):
        await cluster.start(name, seeds=["a"])

    leader = await cluster.agreed_leader(voters=VOTER_POLICY.max_voters, within=20)
    assert leader.name == "a", "growing the set never moves the leadership"
    raft = leader.consensus.raft
    await eventually(
        lambda: not raft.voter_change_pending and not raft.learners,
        what="the last voter change committed and no learner left",
    )
    voters = voters_seen_by(leader)
    spare = next(name for name in cluster.nodes if name not in voters)

    history = [
        entry.voters
        for entry in entries_from_records((await leader.store.load_raft()).entries)
        if entry.kind is EntryKind.VOTERS
    ]
    assert history[0] == {"a"}
    assert history[-1] == voters
    assert all(len(old ^ new) == 1 for old, new in itertools.pairwise(history)), history

    victim = sorted(voters - {leader.name})[0]
    await cluster.stop(victim)
    replaced = (voters - {victim}) | {spare}
    await eventually(
        lambda: (
            voters_seen_by(leader) == replaced and not leader.consensus.raft.voter_change_pending
        ),
        within=20,
        what=f"{spare} voting instead of the dead {victim}",
    )
    await eventually(
        lambda: all(voters_seen_by(cluster.nodes[name]) == replaced for name in replaced),
        what="every voter knowing the new set",
    )


async def test_node_remove_through_a_follower_takes_a_dead_voter_out(
    cluster: InProcessCluster,
) -> None:
    names = ("a", "b", "c")
    await cluster.start("a", voters=names)
    for name in names[1:]:
        await cluster.start(name, voters=names, seeds=["a"])
    leader = await cluster.agreed_leader(voters=3)
    victim, follower = (cluster.nodes[name] for name in names if name != leader.name)

    await cluster.stop(victim.name)

    def dead_to_the_follower() -> bool:
        member = follower.membership.member(victim.name)
        return member is not None and member.state is MemberState.DEAD

    await eventually(dead_to_the_follower, what=f"{follower.name} seeing {victim.name} dead")
    admin = cluster.network.transport("admin", Role.ADMIN)
    removed = await admin.cluster_stub(follower.address).RemoveNode(
        cluster_pb2.RemoveNodeRequest(name=victim.name), timeout=10
    )

    assert removed.name == victim.name
    assert cluster.network.calls["ForgetVoter"] == 1
    await eventually(
        lambda: (
            voters_seen_by(leader) == {leader.name, follower.name}
            and voters_seen_by(follower) == {leader.name, follower.name}
        ),
        what=f"{victim.name} out of the voters on both survivors",
    )
