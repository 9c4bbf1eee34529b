"""``NodeService.Propose`` on a real node (a lone node leads itself): a batch of
commands from a peer, each answered on its own, a malformed one refused alone."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from murmur.certs import IdentityBundle, Role
from murmur.node.control.queue import CancelJob, SubmitJob, encode
from murmur.v1 import node_pb2, node_pb2_grpc
from tests.node.control.queue.builders import spec
from tests.support.cluster import mtls_channel, status_of
from tests.support.nodes import Lab, NodeProcess


def submission(job_id: str) -> bytes:
    now_us = time.time_ns() // 1000
    return encode(SubmitJob(job_id, spec(), "alice", f"key-{job_id}", now_us))


async def leading(node: NodeProcess, lab: Lab) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = await status_of(node, lab)
        if status is not None and status.leader == node.name:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{node.name} never led")


async def test_each_command_of_a_batch_gets_its_own_answer(lab: Lab, ca_node: NodeProcess) -> None:
    await leading(ca_node, lab)
    peer = IdentityBundle.read(lab.issue_identity("node-9", Role.NODE))
    cancel_unknown = encode(CancelJob("no-such-job", "alice", False, "", time.time_ns() // 1000))
    commands = [submission("aaaa00000001"), b"\xffnot a command", cancel_unknown]
    commands.append(submission("aaaa00000002"))
    async with mtls_channel(ca_node, peer) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        answer = await stub.Propose(node_pb2.ProposeRequest(commands=commands), timeout=10)
        again = await stub.Propose(node_pb2.ProposeRequest(commands=commands[:1]), timeout=10)
    first, malformed, cancel, second = answer.outcomes
    assert first.job.id == "aaaa00000001"
    assert first.job.user == "alice"
    assert second.job.id == "aaaa00000002"
    assert malformed.refusal.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a control command" in malformed.refusal.message
    assert cancel.refusal.code == grpc.StatusCode.NOT_FOUND.value[0]
    # The same submission again (a forward retried after a lost answer): same job.
    assert [outcome.job.id for outcome in again.outcomes] == ["aaaa00000001"]
    status = await status_of(ca_node, lab)
    assert status is not None
    assert sum(status.jobs_by_state.values()) == 2


async def test_a_batch_over_the_limit_is_refused_whole(lab: Lab, ca_node: NodeProcess) -> None:
    peer = IdentityBundle.read(lab.issue_identity("node-9", Role.NODE))
    commands = [submission(f"bbbb{i:08d}") for i in range(257)]
    async with mtls_channel(ca_node, peer) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await node_pb2_grpc.NodeServiceStub(channel).Propose(
                node_pb2.ProposeRequest(commands=commands), timeout=10
            )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 256 commands" in (refused.value.details() or "")
