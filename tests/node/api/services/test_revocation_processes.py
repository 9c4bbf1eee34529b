"""Revocation in seconds, in real daemons (issue 14): an admin revokes a member
through one node; every node refuses the member within seconds, and the member's
open log stream through another node ends. A revoked node is refused by the
others' gossip (they see it dead), cannot come back with its certificate, and
``node remove`` evicts it for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import grpc.aio
import pytest

from murmur.certs import Role
from murmur.v1 import cluster_pb2, cluster_pb2_grpc, node_pb2, node_pb2_grpc, types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import (
    client_for,
    eventually,
    mtls_channel,
    node_states,
    start_cluster,
    state_name,
    status_of,
    wait_converged,
)
from tests.support.nodes import Lab, NodeProcess, read_bundle

REFUSED_WITHIN_SECONDS = 5.0


async def who_am_i(node: NodeProcess, bundle_path: Path) -> str:
    """WhoAmI through ``node`` on a bare channel: "OK", or the code it was refused with
    (an UNAUTHENTICATED one that does not say why is not a revocation's)."""
    async with mtls_channel(node, read_bundle(bundle_path)) as channel:
        try:
            await cluster_pb2_grpc.ClusterServiceStub(channel).WhoAmI(
                cluster_pb2.WhoAmIRequest(), timeout=3
            )
        except grpc.aio.AioRpcError as exc:
            revoked = "revoked" in (exc.details() or "")
            return exc.code().name + ("" if revoked else " (not a revocation)")
    return "OK"


async def _voters(node: NodeProcess, lab: Lab) -> list[str] | None:
    status = await status_of(node, lab)
    return None if status is None else list(status.voters)


async def codes(nodes: Sequence[NodeProcess], bundle_path: Path) -> list[str]:
    return [await who_am_i(node, bundle_path) for node in nodes]


async def test_a_revoked_member_is_refused_everywhere_and_its_log_stream_ends(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    await wait_agreed(nodes, lab, voters=3)
    alice = lab.issue_identity("alice", Role.MEMBER)
    async with client_for(nodes[1], alice) as client:
        job = await client.submit_job(
            types_pb2.JobSpec(
                name="sleeper",
                runtime=types_pb2.JOB_RUNTIME_PROCESS,
                command=["sh", "-c", "echo started; exec sleep 600"],
            ),
            timeout=15,
        )
    assert await codes(nodes, alice) == ["OK"] * 3

    async with mtls_channel(nodes[1], read_bundle(alice)) as channel:
        stream = cluster_pb2_grpc.ClusterServiceStub(channel).StreamLogs(
            cluster_pb2.StreamLogsRequest(job_id=job.id, follow=True)
        )

        async def output_started() -> None:
            while True:
                line = await stream.read()
                assert isinstance(line, types_pb2.LogLine)
                if line.stream == types_pb2.LOG_STREAM_STDOUT and line.text.strip() == "started":
                    return

        await asyncio.wait_for(output_started(), 45)

        async with client_for(nodes[0], lab.admin_identity) as admin:
            answer = await admin.revoke_certificate(name="alice", reason="left the lab")
        revoked_at = time.monotonic()
        assert answer.target == "alice"
        assert [j.id for j in answer.active_jobs] == [job.id]  # listed, not cancelled

        async def read_to_end() -> None:
            while await stream.read() is not grpc.aio.EOF:
                pass

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(read_to_end(), REFUSED_WITHIN_SECONDS)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "certificate of alice was revoked" in (ended.value.details() or "")
        assert "left the lab" in (ended.value.details() or "")

    await eventually(
        lambda: codes(nodes, alice),
        lambda seen: seen == ["UNAUTHENTICATED"] * 3,
        within=REFUSED_WITHIN_SECONDS,
        interval=0.1,
        what="every node refusing alice",
    )
    assert time.monotonic() - revoked_at < REFUSED_WITHIN_SECONDS + 3

    async with client_for(nodes[2], lab.admin_identity) as admin:
        listed = await admin.list_revocations(timeout=5)
        assert [r.name for r in listed.revocations] == ["alice"]
        still = await admin.get_job(job.id, timeout=10)
        assert still.state in (types_pb2.JOB_STATE_STARTING, types_pb2.JOB_STATE_RUNNING)
        await admin.cancel_job(job.id, timeout=10)

    # A certificate the CA issues after the revocation (`murmur user add`) works.
    user_add = lab.murmur(
        "user", "add", "alice", "--role", "member", "--out", str(lab.root / "alice-2.pem"),
        "--node", nodes[0].address,
    )  # fmt: skip
    assert user_add.returncode == 0, user_add.stderr
    await eventually(
        lambda: codes(nodes, lab.root / "alice-2.pem"),
        lambda seen: seen == ["OK"] * 3,
        within=10,
        what="the new certificate accepted",
    )


async def test_a_revoked_node_is_dead_to_the_others_and_cannot_come_back(lab: Lab) -> None:
    nodes = start_cluster(lab, 3)
    # The default voter stabilization (10 s): a dead voter is replaced only that long
    # after it is seen dead, so a prompt exit from the voters is the revocation's.
    await wait_agreed(nodes, lab, voters=3)
    victim, survivors = nodes[2], nodes[:2]
    old_bundle = read_bundle(lab.root / victim.name / "identity.pem")

    revoke = lab.murmur(
        "cert", "revoke", victim.name, "--reason", "stolen disk", "--node", nodes[1].address
    )
    assert revoke.returncode == 0, revoke.stderr
    # Out of the voters at once: the leader sends a revoked node no more of the log.
    await eventually(
        lambda: _voters(survivors[0], lab),
        lambda voters: voters is not None and victim.name not in voters,
        within=8,
        what=f"{victim.name} out of the voters",
    )
    await wait_converged(survivors, lab.admin_identity, {victim.name: "dead"}, within=20)

    async with mtls_channel(nodes[1], old_bundle) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await node_pb2_grpc.NodeServiceStub(channel).Ping(node_pb2.PingRequest(), timeout=3)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    # Restarted with its old certificate, it is still refused: dead to the others.
    victim.kill()
    back = lab.restart(victim)
    await asyncio.sleep(4)
    for node in survivors:
        seen = await node_states(node, lab.admin_identity)
        assert state_name(seen[victim.name]) == "dead"

    removed = lab.murmur("node", "remove", victim.name, "--node", nodes[0].address)
    assert removed.returncode == 0, removed.stderr
    await wait_converged(survivors, lab.admin_identity, {victim.name: "left"}, within=20)
    listed = lab.murmur("cert", "revocations", "--node", nodes[1].address)
    assert listed.returncode == 0, listed.stderr
    assert victim.name in listed.stdout
    assert "stolen disk" in listed.stdout
    back.kill()
