"""The leader's run calls to its own node, made in-process (node/api/services/runs.py):
they act like the gRPC calls, errors included, and only the local address gets them."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from murmur.node.agent.executor import RunExecutor
from murmur.node.api.services.runs import LocalNodeStub, RunStubs
from murmur.node.jobspec import states
from murmur.storage import Store
from murmur.v1 import node_pb2
from tests.support.accounts import harness_accounts
from tests.support.executor import assignment, executor


def start_request(run_id: str, *command: str, term: int = 1) -> node_pb2.StartRunRequest:
    planned = assignment(run_id, *command, term=term)
    return node_pb2.StartRunRequest(
        job_id=planned.job_id,
        run_id=planned.run_id,
        attempt=planned.attempt,
        spec=planned.spec,
        term=planned.term,
        sequence=planned.sequence,
        user=planned.user,
        lease_seconds=planned.lease_seconds,
    )


async def test_start_list_and_stop_a_run_in_process(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        stub = LocalNodeStub(node.jobs)
        await stub.StartRun(start_request("j1.1", "sleep", "30", term=2), timeout=5)
        await node.running("j1.1")
        listed = await stub.ListRuns(node_pb2.ListRunsRequest(term=2, lease_seconds=30))
        assert [run.id for run in listed.runs] == ["j1.1"]
        assert listed.highest_term == 2
        await stub.StopRun(node_pb2.StopRunRequest(run_id="j1.1", term=2, reason="enough"))
        stopped = await node.ended("j1.1")
    assert stopped.state == states.CANCELLED
    assert stopped.reason == "enough"


async def test_refusals_come_out_as_the_status_the_call_would_have_had(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir) as node:
        stub = LocalNodeStub(node.jobs)
        await stub.StartRun(start_request("j1.1", "true", term=5))
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await stub.StartRun(start_request("j2.1", "true", term=4))
        assert stale.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "term 4 is older than term 5" in (stale.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await stub.StartRun(node_pb2.StartRunRequest(term=5))
        assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        await node.ended("j1.1")


async def test_a_call_past_its_deadline_ends_as_deadline_exceeded(
    store: Store, runs_dir: Path
) -> None:
    # Never started, so never recovered: every call waits for recovery.
    waiting = RunExecutor(
        store=store,
        node_name="node-1",
        runs_dir=runs_dir,
        runtimes={},
        datasets=lambda: {},
        stop_grace_seconds=1.0,
        accounts=harness_accounts(),
        on_run_change=lambda record: None,
        default_lease_seconds=30,
    )
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await LocalNodeStub(waiting).ListRuns(node_pb2.ListRunsRequest(term=1), timeout=0.2)
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


class RemoteStub:
    pass


class FakeTransport:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def node_stub(self, address: str) -> RemoteStub:
        self.asked.append(address)
        return RemoteStub()


async def test_only_the_local_address_is_called_in_process(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        local = LocalNodeStub(node.jobs)
        transport = FakeTransport()
        stubs = RunStubs(transport, "127.0.0.2:7000", local)  # type: ignore[arg-type]
        assert stubs.node_stub("127.0.0.2:7000") is local
        assert isinstance(stubs.node_stub("127.0.0.3:7000"), RemoteStub)
        assert transport.asked == ["127.0.0.3:7000"]
