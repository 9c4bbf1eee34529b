"""The consensus runner in this process: three nodes of the daemon's objects on a
memory network (tests/node/inprocess), each with its SQLite store, elect one
leader, commit what it is given on every node, forward what a follower is given,
fail over when the leader dies, and a restarted node reloads its log."""

from __future__ import annotations

import pytest

from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.queue.commands import SubmitJob, encode
from murmur.node.control.queue.results import ApplyResult
from murmur.v1 import types_pb2
from tests.node.inprocess.inprocess_cluster import InProcessCluster, InProcessNode, eventually

NAMES = ("a", "b", "c")


def submission(job_id: str) -> SubmitJob:
    return SubmitJob(
        job_id=job_id,
        spec=types_pb2.JobSpec(
            name=job_id, runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["true"], nodes=1
        ),
        user="alice",
        idempotency_key=f"key-{job_id}",
        submitted_at_us=1,
    )


async def three_voters(cluster: InProcessCluster) -> list[InProcessNode]:
    first = await cluster.start("a", voters=NAMES)
    return [first] + [await cluster.start(name, voters=NAMES, seeds=["a"]) for name in NAMES[1:]]


def everyone_has(cluster: InProcessCluster, job_id: str) -> bool:
    return all(node.control.job(job_id) is not None for node in cluster.nodes.values())


async def test_three_runners_elect_one_leader_and_commit_on_all(
    cluster: InProcessCluster,
) -> None:
    await three_voters(cluster)
    leader = await cluster.agreed_leader(voters=3)

    result = await leader.consensus.propose(encode(submission("job-1")))

    assert isinstance(result, ApplyResult)
    assert result.job is not None
    assert result.job.id == "job-1"
    await eventually(lambda: everyone_has(cluster, "job-1"), what="job-1 applied on every node")
    await eventually(
        lambda: len({node.consensus.applied_index for node in cluster.nodes.values()}) == 1,
        what="every node applied as far as the leader",
    )
    assert await cluster.agreed_leader(voters=3) is leader


async def test_a_followers_proposal_is_forwarded_to_the_leader(
    cluster: InProcessCluster,
) -> None:
    await three_voters(cluster)
    leader = await cluster.agreed_leader(voters=3)
    follower = next(node for node in cluster.nodes.values() if node is not leader)

    with pytest.raises(NotLeaderError) as refused:
        await follower.consensus.propose(encode(submission("not-here")))
    assert refused.value.leader == leader.name

    forwarded_before = cluster.network.calls["Propose"]
    job = await follower.cluster_jobs.propose(submission("job-2"))

    assert job.id == "job-2"
    assert job.state == types_pb2.JOB_STATE_PENDING
    assert cluster.network.calls["Propose"] > forwarded_before
    assert leader.control.job("job-2") is not None
    await eventually(lambda: everyone_has(cluster, "job-2"), what="job-2 applied on every node")


async def test_a_new_leader_takes_over_and_a_restarted_node_reloads_its_log(
    cluster: InProcessCluster,
) -> None:
    await three_voters(cluster)
    old = await cluster.agreed_leader(voters=3)
    await old.cluster_jobs.propose(submission("before"))
    await eventually(lambda: everyone_has(cluster, "before"), what="the first job everywhere")
    written = old.consensus.applied_index

    await cluster.stop(old.name)
    new = await cluster.agreed_leader(voters=3, not_name=old.name, within=20)
    survivor = next(node for node in cluster.nodes.values() if node is not new)
    await survivor.cluster_jobs.propose(submission("after"))
    assert new.control.job("before") is not None
    assert new.control.job("after") is not None

    back = await cluster.start(old.name, seeds=[new.name])
    # Its Raft started from what its store held, the first job included.
    assert back.consensus.raft.last_log.index >= written
    await eventually(
        lambda: everyone_has(cluster, "after") and back.consensus.status().leader == new.name,
        within=20,
        what="the restarted node following the new leader with every job",
    )
    assert back.control.job("before") is not None
    assert not back.consensus.is_leader
