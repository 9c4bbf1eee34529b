"""Control protocol levels across a cluster of the daemon's objects (node/control/
queue/protocol_gate.py, node/control/consensus/runner.py): a command some node would
not read is refused at the door it came in and at the leader's, a voter that is down
still holds it back, the log's level rises once every node speaks more, and a node
rolled back to an older level stops applying the log instead of skipping what it does
not know, without costing the cluster its quorum, until it is upgraded again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from murmur.node.control.leader.rollout import ServiceRollout
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.leader.term import LeaderTerm
from murmur.node.control.queue.commands import (
    AssignJob,
    CreateService,
    SetNodeDrain,
    SubmitJob,
    encode,
)
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
from murmur.node.errors import UpgradeInProgressError
from murmur.v1 import node_pb2, types_pb2
from tests.node.inprocess.inprocess_cluster import InProcessCluster, InProcessNode, eventually

NAMES = ("a", "b", "c")
GATED = "which does not know job arrays, dependencies, projects and batch submissions"


def submission(job_id: str, project: str = "") -> SubmitJob:
    spec = types_pb2.JobSpec(
        name=job_id, runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["true"], project=project
    )
    return SubmitJob(job_id, spec, "alice", f"key-{job_id}", 1)


def knows_levels(node: InProcessNode, expected: dict[str, int]) -> bool:
    seen = {member.name: member.level for member in node.gate.members() if member.version}
    return all(seen.get(name) == level for name, level in expected.items())


def everyone_has(cluster: InProcessCluster, job_id: str) -> bool:
    return all(node.control.job(job_id) is not None for node in cluster.nodes.values())


async def test_an_old_node_holds_new_commands_back_and_stops_rather_than_misread_them(
    cluster: InProcessCluster,
) -> None:
    await cluster.start("a", voters=NAMES)
    await cluster.start("b", voters=NAMES, seeds=["a"])
    await cluster.start("c", voters=NAMES, seeds=["a"], protocol_level=1)
    leader = await cluster.agreed_leader(voters=3)
    a = cluster.nodes["a"]
    await eventually(
        lambda: (
            all(knows_levels(node, {"a": PROTOCOL_LEVEL, "c": 1}) for node in (a, leader)) or None
        ),
        what="gossip carrying every node's level",
    )

    # The door a request comes in by, and the leader's own, both refuse it.
    with pytest.raises(UpgradeInProgressError, match=GATED) as at_door:
        await a.cluster_jobs.propose(submission("p1", project="vision"))
    assert "node c runs murmur 0.1.0+level-1 (protocol 1)" in str(at_door.value)
    with pytest.raises(UpgradeInProgressError, match=GATED):
        await leader.consensus.propose(encode(submission("p1", project="vision")))
    # What every version reads goes on as before.
    await a.cluster_jobs.propose(submission("plain-1"))

    # Down for its upgrade, c still holds it back: it votes, and will replay the log.
    await cluster.stop("c")
    if leader.name == "c":
        leader = await cluster.agreed_leader(voters=3)
    await eventually(
        lambda: any(m.name == "c" and m.down for m in leader.gate.members()) or None,
        what="gossip holding c down",
    )
    with pytest.raises(UpgradeInProgressError, match="node c \\(down\\) runs"):
        await leader.consensus.propose(encode(submission("p1", project="vision")))

    # Upgraded: the log's level goes up first, in front of the first command needing it.
    await cluster.start("c", seeds=["a"])
    await eventually(
        lambda: knows_levels(leader, {"c": PROTOCOL_LEVEL}) or None, what="c's new level"
    )
    await eventually(
        lambda: knows_levels(a, {"c": PROTOCOL_LEVEL}) or None, what="c's new level at a"
    )
    job = await a.cluster_jobs.propose(submission("p1", project="vision"))
    assert job.spec.project == "vision"
    await eventually(lambda: everyone_has(cluster, "p1") or None, what="p1 on every node")
    assert {node.control.cluster_level for node in cluster.nodes.values()} == {PROTOCOL_LEVEL}

    # Rolled back to the old version: c stops where the log outgrew it, says so in
    # gossip, never leads, and the others go on with its acknowledgements and vote.
    await cluster.stop("c")
    c = await cluster.start("c", seeds=["a"], protocol_level=1)
    await eventually(lambda: c.consensus.halted or None, what="c stopping at the new entries")
    # The first such entry raises the cluster's level to what the others speak.
    assert f"needs control protocol {PROTOCOL_LEVEL}" in c.consensus.halted
    assert c.control.job("p1") is None
    await eventually(
        lambda: (
            next((info.upgrade_needed for info in a.view.nodes() if info.name == "c"), "") or None
        ),
        what="c saying in gossip that it must be upgraded",
    )
    leader = await cluster.agreed_leader(voters=3)
    assert leader.name != "c"
    await cluster.stop(leader.name)
    survivor = await cluster.agreed_leader(voters=3, not_name=leader.name)
    assert survivor.name != "c"  # elected with c's vote: two of three
    await survivor.cluster_jobs.propose(submission("plain-2"))  # committed with c's acks

    # Upgraded again: it applies the log from where it stopped.
    await cluster.stop("c")
    c = await cluster.start("c", seeds=[survivor.name])
    await eventually(
        lambda: (c.control.job("plain-2") is not None and c.control.job("p1") is not None) or None,
        what="c applying the log it had stopped at",
    )
    assert c.consensus.halted == ""


async def test_a_leader_refuses_a_forwarded_command_of_a_later_version_as_an_upgrade(
    cluster: InProcessCluster,
) -> None:
    # A newer node that forwards what this leader does not know, on a stale view of
    # its level, learns that the upgrade is not done, not that its command is garbage.
    await cluster.start("a", voters=NAMES)
    await cluster.start("b", voters=NAMES, seeds=["a"])
    await cluster.start("c", voters=NAMES, seeds=["a"])
    leader = await cluster.agreed_leader(voters=3)
    follower = next(node for node in cluster.nodes.values() if node is not leader)
    answer = await follower.transport.node_stub(leader.address).Propose(
        node_pb2.ProposeRequest(commands=[b"\xa2\x06\x00", b"\xff\xff\xff"]), timeout=5
    )
    later, garbage = (outcome.refusal for outcome in answer.outcomes)
    assert later.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert later.message == (
        f"the leader {leader.name} runs an older murmur (protocol {PROTOCOL_LEVEL}), which "
        "does not know this command: finish the upgrade first"
    )
    assert garbage.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_a_node_below_the_logs_level_is_never_given_the_log(tmp_path: Path) -> None:
    # Once the log's level went up, a node of an older version that joins is made
    # neither learner nor voter: one from before levels would skip what it does not
    # know, this one would stop and hold a seat it cannot lead from.
    cluster = InProcessCluster(tmp_path, manage_voters=True)
    try:
        a = await cluster.start("a", founder=True)
        await cluster.agreed_leader(voters=1)
        assert await a.gate.raise_once() == PROTOCOL_LEVEL
        await cluster.start("b", seeds=["a"])
        await cluster.start("old", seeds=["a"], protocol_level=1)
        await cluster.start("d", seeds=["a"])
        await cluster.agreed_leader(voters=3, within=20)
        for _ in range(20):  # several rounds of the voter manager
            status = a.consensus.status()
            assert "old" not in status.voters | status.learners
            await asyncio.sleep(0.1)
        assert a.consensus.status().voters == {"a", "b", "d"}
    finally:
        await cluster.close()


async def test_the_leaders_own_rollout_waits_for_the_upgrade(cluster: InProcessCluster) -> None:
    # A drain moves a service's replicas with RollReplica (protocol 2): while a node
    # of level 1 is up, the leader's rollout waits, and its term goes on.
    a = await cluster.start("a", founder=True)
    await cluster.agreed_leader(voters=1)
    await cluster.start("b", seeds=["a"], protocol_level=1)
    await eventually(lambda: knows_levels(a, {"b": 1}) or None, what="b's level at a")
    template = types_pb2.JobSpec(runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["serve"])
    service = types_pb2.ServiceSpec(name="chat", replicas=1, model="m", template=template)
    await a.cluster_jobs.commit(CreateService(service, "alice", 1))
    (replica,) = a.control.services()[0].replica_jobs
    await a.cluster_jobs.commit(AssignJob(replica, "b", "run-1", 1, (), 2))
    await a.cluster_jobs.commit(SetNodeDrain("b", True, "admin", 3))

    async with LeaderTerm(
        a.consensus.raft.term, consensus=a.consensus, stats=LeaderStats()
    ) as term:
        rollout = ServiceRollout(term, control=a.control, view=a.view)
        await rollout.roll()  # refused by the gate: no exception, nothing rolled
        assert a.control.services()[0].replica_jobs == (replica,)

        await cluster.stop("b")
        await cluster.start("b", seeds=["a"])  # upgraded
        await eventually(
            lambda: knows_levels(a, {"b": PROTOCOL_LEVEL}) or None, what="b's new level"
        )
        await rollout.roll()
        assert a.control.services()[0].replica_jobs != (replica,)
        assert a.control.cluster_level == PROTOCOL_LEVEL
