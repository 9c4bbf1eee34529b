"""Small fakes of what the leader's duties talk to, and a builder of a term's duties.

The control state is real and fed through a log (tests/node/control/queue/builders.py);
Raft, gossip and the nodes' RPCs are fakes that record what the leader asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from murmur.node.control.leader.duties import LeaderDuties, TermDuties
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.leader.term import LeaderTerm
from murmur.node.control.queue import AssignJob, SubmitJob, decode
from murmur.node.jobspec import states
from murmur.v1 import node_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

TERM = 4


@dataclass
class FakeConsensus:
    """Commits every proposal at once, at the next index of the log; leads ``term``
    while ``leading``."""

    log: Log
    name: str = "leader"
    term: int = TERM
    leading: bool = True
    proposed: list[object] = field(default_factory=list)
    signal: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def raft(self) -> Any:
        return type("RaftView", (), {"term": self.term})()

    @property
    def is_leader(self) -> bool:
        return self.leading

    def state_is_current(self) -> bool:
        return self.leading

    def applied_signal(self) -> asyncio.Event:
        return self.signal

    def depose(self) -> None:
        """Another node won a newer term."""
        self.leading = False
        self.term += 1
        self.signal.set()
        self.signal = asyncio.Event()

    async def propose(self, data: bytes) -> object:
        self.proposed.append(decode(data))
        return self.log.apply_bytes(data)


@dataclass
class FakeNodeStub:
    calls: list[tuple[str, object]]
    fail_with: grpc.aio.AioRpcError | None = None
    address: str = ""
    start_gate: asyncio.Event | None = None
    """When set, StartRun waits for it (a node that takes its time)."""
    cancelled: list[str] = field(default_factory=list)

    async def StopRun(self, request: node_pb2.StopRunRequest, **_: float) -> None:
        self.calls.append(("StopRun", request))

    async def StartRun(self, request: node_pb2.StartRunRequest, **_: float) -> None:
        self.calls.append(("StartRun", request))
        if self.start_gate is not None:
            try:
                await self.start_gate.wait()
            except asyncio.CancelledError:
                self.cancelled.append(request.run_id)
                raise
        if self.fail_with is not None:
            raise self.fail_with

    async def ListRuns(
        self, request: node_pb2.ListRunsRequest, **_: float
    ) -> node_pb2.ListRunsResponse:
        self.calls.append(("ListRuns", self.address))
        return node_pb2.ListRunsResponse()


@dataclass
class FakePeers:
    calls: list[tuple[str, object]] = field(default_factory=list)
    fail_with: grpc.aio.AioRpcError | None = None
    start_gate: asyncio.Event | None = None
    cancelled: list[str] = field(default_factory=list)
    """Run ids whose StartRun was cancelled while the node took its time."""

    def node_stub(self, address: str) -> FakeNodeStub:
        return FakeNodeStub(self.calls, self.fail_with, address, self.start_gate, self.cancelled)


class FakeView:
    gpus = 0
    """GPUs that n1 offers (n1 runs processes; n2 offers no runtime)."""

    def node(self, name: str) -> types_pb2.NodeInfo:
        info = types_pb2.NodeInfo(name=name, address=f"{name}:1", state=types_pb2.NODE_STATE_ALIVE)
        if name == "n1":
            info.runtimes.append("process")
            for index in range(self.gpus):
                info.gpus.devices.add(index=index, model="A100-80GB")
        return info

    def nodes(self) -> list[types_pb2.NodeInfo]:
        return [self.node("n1"), self.node("n2")]


@dataclass
class FakeJobs:
    published: list[list[str]] = field(default_factory=list)

    def publish(self, job_ids: list[str]) -> None:
        self.published.append(job_ids)


@dataclass
class Leader:
    """A leader's duties over a log, with the fakes they talk to."""

    duties: LeaderDuties
    consensus: FakeConsensus
    peers: FakePeers
    view: FakeView
    jobs: FakeJobs

    def term(self, number: int = TERM) -> LeaderTerm:
        return LeaderTerm(number, consensus=self.consensus, stats=LeaderStats())  # type: ignore[arg-type]

    def wire(self, term: LeaderTerm | None = None) -> TermDuties:
        """The duties of ``term`` (one of term ``TERM`` if not given)."""
        return self.duties.wire(term if term is not None else self.term())


def leader_over(
    log: Log,
    *,
    lease_seconds: float = 30.0,
    start_timeout_seconds: float = 600.0,
    view: FakeView | None = None,
) -> Leader:
    consensus, peers, jobs = FakeConsensus(log), FakePeers(), FakeJobs()
    view = view if view is not None else FakeView()
    duties = LeaderDuties(
        consensus=consensus,  # type: ignore[arg-type]
        control=log.state,
        jobs=jobs,  # type: ignore[arg-type]
        view=view,  # type: ignore[arg-type]
        peers=peers,  # type: ignore[arg-type]
        lease_seconds=lease_seconds,
        local_address="leader:1",
        start_timeout_seconds=start_timeout_seconds,
    )
    return Leader(duties, consensus, peers, view, jobs)


def run(run_id: str, job_id: str, state: str, *, exit_code: int | None = None) -> types_pb2.Run:
    message = types_pb2.Run(id=run_id, job_id=job_id, state=states.to_proto(state), reason=state)
    if exit_code is not None:
        message.exit_code = exit_code
    return message


def placed(log: Log, job_id: str, *, node: str = "n1", run_id: str = "r1") -> None:
    assert log.apply(SubmitJob(job_id, spec(), "alice", "", SECOND)).ok
    assert log.apply(AssignJob(job_id, node, run_id, 1, (), 2 * SECOND)).ok


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.3:4100: "
    "Failed to connect to remote host: Connection refused"
)


async def let_tasks_run() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
