"""The replicated queue through the ClusterService servicer, in this process: a
client (a user's identity on the memory network) submits, reads, lists, cancels and
watches jobs through any of three nodes of the daemon's objects; a follower
forwards writes to the leader (``NodeService.Propose``) and reads to it
(``ClusterService.GetJob``...), and the leader's refusals keep their status."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from murmur.certs import Role
from murmur.v1 import cluster_pb2, types_pb2
from tests.node.inprocess.inprocess_cluster import InProcessCluster, InProcessNode, eventually

NAMES = ("a", "b", "c")


def spec(name: str) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(name=name, runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["true"])


async def leader_and_followers(
    cluster: InProcessCluster,
) -> tuple[InProcessNode, list[InProcessNode]]:
    await cluster.start("a", voters=NAMES)
    for name in NAMES[1:]:
        await cluster.start(name, voters=NAMES, seeds=["a"])
    leader = await cluster.agreed_leader(voters=3)
    return leader, [node for node in cluster.nodes.values() if node is not leader]


async def test_a_job_submitted_through_a_follower_is_read_through_every_node(
    cluster: InProcessCluster,
) -> None:
    leader, followers = await leader_and_followers(cluster)
    alice = cluster.network.transport("alice", Role.MEMBER)
    through_follower = alice.cluster_stub(followers[0].address)

    job = await through_follower.SubmitJob(
        cluster_pb2.SubmitJobRequest(spec=spec("first"), idempotency_key="k-1"), timeout=10
    )
    again = await through_follower.SubmitJob(
        cluster_pb2.SubmitJobRequest(spec=spec("first"), idempotency_key="k-1"), timeout=10
    )

    assert job.user == "alice"
    assert job.state == types_pb2.JOB_STATE_PENDING
    assert again.id == job.id, "a retried submission (same key) makes no second job"
    assert cluster.network.calls["Propose"] >= 2
    for node in cluster.nodes.values():
        read = await alice.cluster_stub(node.address).GetJob(
            cluster_pb2.GetJobRequest(id=job.id), timeout=10
        )
        assert (read.id, read.spec.name, read.state) == (job.id, "first", job.state)
    listed = await through_follower.ListJobs(cluster_pb2.ListJobsRequest(), timeout=10)
    assert [listed_job.id for listed_job in listed.jobs] == [job.id]
    assert leader.control.job(job.id) is not None


async def test_the_leaders_refusals_reach_the_client_with_their_status(
    cluster: InProcessCluster,
) -> None:
    _, followers = await leader_and_followers(cluster)
    alice = cluster.network.transport("alice", Role.MEMBER)
    bob = cluster.network.transport("bob", Role.MEMBER)
    job = await alice.cluster_stub(followers[0].address).SubmitJob(
        cluster_pb2.SubmitJobRequest(spec=spec("alices")), timeout=10
    )

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await alice.cluster_stub(followers[1].address).GetJob(
            cluster_pb2.GetJobRequest(id="no-such-job"), timeout=10
        )
    with pytest.raises(grpc.aio.AioRpcError) as not_bobs:
        await bob.cluster_stub(followers[1].address).CancelJob(
            cluster_pb2.CancelJobRequest(id=job.id), timeout=10
        )
    with pytest.raises(grpc.aio.AioRpcError) as bad_spec:
        await alice.cluster_stub(followers[1].address).SubmitJob(
            cluster_pb2.SubmitJobRequest(spec=types_pb2.JobSpec(name="no command")), timeout=10
        )

    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert not_bobs.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert bad_spec.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_followers_watch_relays_the_leaders_changes(cluster: InProcessCluster) -> None:
    leader, followers = await leader_and_followers(cluster)
    alice = cluster.network.transport("alice", Role.MEMBER)
    seen: asyncio.Queue[types_pb2.Job] = asyncio.Queue()

    async def watch() -> None:
        stream = alice.cluster_stub(followers[0].address).WatchJobs(
            cluster_pb2.WatchJobsRequest(user="alice")
        )
        async for job in stream:
            seen.put_nowait(job)

    watcher = asyncio.create_task(watch())
    try:
        await eventually(
            lambda: leader.cluster_jobs.updates.subscriber_count == 1,
            what="the follower's watch relayed to the leader",
        )
        job = await alice.cluster_stub(followers[1].address).SubmitJob(
            cluster_pb2.SubmitJobRequest(spec=spec("watched")), timeout=10
        )
        await alice.cluster_stub(followers[1].address).CancelJob(
            cluster_pb2.CancelJobRequest(id=job.id, reason="changed my mind"), timeout=10
        )
        async with asyncio.timeout(10):
            states = []
            while types_pb2.JOB_STATE_CANCELLED not in states:
                update = await seen.get()
                assert update.id == job.id
                states.append(update.state)
        assert states[0] == types_pb2.JOB_STATE_PENDING
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def test_a_followers_status_names_the_leader_voters_and_jobs(
    cluster: InProcessCluster,
) -> None:
    leader, followers = await leader_and_followers(cluster)
    alice = cluster.network.transport("alice", Role.MEMBER)
    job = await alice.cluster_stub(leader.address).SubmitJob(
        cluster_pb2.SubmitJobRequest(spec=spec("counted")), timeout=10
    )
    follower = followers[0]

    def heard_everything() -> bool:
        nodes = follower.view.nodes()
        return follower.control.job(job.id) is not None and all(info.gpus.devices for info in nodes)

    await eventually(heard_everything, what="the follower applying the job and hearing all")
    status = await alice.cluster_stub(follower.address).GetStatus(
        cluster_pb2.GetStatusRequest(), timeout=10
    )

    assert len(status.nodes) == 3
    assert dict(status.jobs_by_state) == {"pending": 1}
    assert status.answered_by == follower.name
    assert status.leader == leader.name
    assert sorted(status.voters) == list(NAMES)
    assert [node.name for node in status.nodes if node.leader] == [leader.name]
    assert status.gpus_total == 6
