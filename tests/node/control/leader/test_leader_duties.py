"""The leader's reconciliation with a node's own record of its runs, and its
handling of a start its node refused.

The control state is real and fed through a log; Raft, gossip and the node's RPCs
are small fakes that record what the leader asked, so each rule shows alone: a run
the log no longer wants is stopped, what the node knows that the log does not is
committed, an assignment the node never received is sent again, and a cancel
pending on a running job is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from murmur.node.control.leader.duties import LeaderDuties
from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ControlState,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
    decode,
)
from murmur.node.jobspec import states
from murmur.v1 import node_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

TERM = 4


@dataclass
class FakeConsensus:
    """Commits every proposal at once, at the next index of the log."""

    log: Log
    name: str = "leader"
    proposed: list[object] = field(default_factory=list)

    @property
    def raft(self) -> Any:
        return type("RaftView", (), {"term": TERM})()

    @property
    def is_leader(self) -> bool:
        return True

    def state_is_current(self) -> bool:
        return True

    async def propose(self, data: bytes) -> object:
        self.proposed.append(decode(data))
        return self.log.apply_bytes(data)


@dataclass
class FakeNodeStub:
    calls: list[tuple[str, object]]
    fail_with: grpc.aio.AioRpcError | None = None
    address: str = ""

    async def StopRun(self, request: node_pb2.StopRunRequest, **_: float) -> None:
        self.calls.append(("StopRun", request))

    async def StartRun(self, request: node_pb2.StartRunRequest, **_: float) -> None:
        self.calls.append(("StartRun", request))
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

    def node_stub(self, address: str) -> FakeNodeStub:
        return FakeNodeStub(self.calls, self.fail_with, address)


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


def leader_over(
    log: Log, *, lease_seconds: float = 30.0, start_timeout_seconds: float = 600.0
) -> tuple[LeaderDuties, FakeConsensus, FakePeers]:
    consensus, peers = FakeConsensus(log), FakePeers()
    duties = LeaderDuties(
        consensus=consensus,  # type: ignore[arg-type]
        control=log.state,
        jobs=None,  # type: ignore[arg-type]
        view=FakeView(),  # type: ignore[arg-type]
        peers=peers,  # type: ignore[arg-type]
        lease_seconds=lease_seconds,
        local_address="leader:1",
        start_timeout_seconds=start_timeout_seconds,
    )
    return duties, consensus, peers


def run(run_id: str, job_id: str, state: str, *, exit_code: int | None = None) -> types_pb2.Run:
    message = types_pb2.Run(id=run_id, job_id=job_id, state=states.to_proto(state), reason=state)
    if exit_code is not None:
        message.exit_code = exit_code
    return message


def placed(log: Log, job_id: str, *, node: str = "n1", run_id: str = "r1") -> None:
    assert log.apply(SubmitJob(job_id, spec(), "alice", "", SECOND)).ok
    assert log.apply(AssignJob(job_id, node, run_id, 1, (), 2 * SECOND)).ok


async def test_a_run_the_log_placed_elsewhere_is_stopped() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1", node="n2", run_id="r-new")
    duties, _, peers = leader_over(log)
    # n1 comes back still running the job's old copy.
    await duties._settle(TERM, "n1", [run("r-old", "j1", states.RUNNING)])
    assert [(kind, req.run_id) for kind, req in peers.calls] == [("StopRun", "r-old")]  # type: ignore[attr-defined]
    (_, stop) = peers.calls[0]
    assert stop.term == TERM  # type: ignore[attr-defined]


async def test_a_run_of_an_unknown_job_is_stopped_and_an_ended_one_left_alone() -> None:
    log = Log(ControlState(), term=TERM)
    duties, consensus, peers = leader_over(log)
    await duties._settle(
        TERM, "n1", [run("r9", "ghost", states.RUNNING), run("r8", "ghost", states.SUCCEEDED)]
    )
    assert [(kind, req.run_id) for kind, req in peers.calls] == [("StopRun", "r9")]  # type: ignore[attr-defined]
    assert consensus.proposed == []


async def test_what_the_node_knows_and_the_log_does_not_is_committed() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    duties, consensus, peers = leader_over(log)
    # The run ended while no leader listened: the node's record settles it.
    await duties._settle(TERM, "n1", [run("r1", "j1", states.SUCCEEDED, exit_code=0)])
    assert peers.calls == []
    (report,) = consensus.proposed
    assert isinstance(report, ReportRun)
    assert (report.run_id, report.state, report.exit_code) == ("r1", states.SUCCEEDED, 0)
    job = log.state.job("j1")
    assert job is not None
    assert job.state == states.SUCCEEDED


async def test_an_assignment_the_node_never_received_is_sent_again() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    duties, _, peers = leader_over(log)
    await duties._settle(TERM, "n1", [])
    await _drain_tasks()
    ((kind, start),) = peers.calls
    assert kind == "StartRun"
    assert (start.run_id, start.term) == ("r1", TERM)  # type: ignore[attr-defined]


async def test_an_assignment_of_an_earlier_term_is_sent_as_this_leaders() -> None:
    """The node fences the call with the sender's term: a run an earlier leader
    assigned is not refused as stale when this leader sends it again."""
    log = Log(ControlState(), term=TERM - 1)
    placed(log, "j1")
    log.term = TERM
    duties, _, peers = leader_over(log)
    await duties._settle(TERM, "n1", [])
    await _drain_tasks()
    ((kind, start),) = peers.calls
    assert kind == "StartRun"
    assert (start.term, start.sender_term) == (TERM - 1, TERM)  # type: ignore[attr-defined]


async def test_a_cancel_pending_on_a_running_job_is_delivered() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "running", 3 * SECOND)).ok
    assert log.apply(CancelJob("j1", "alice", False, "not needed", 4 * SECOND)).ok
    duties, _, peers = leader_over(log)
    await duties._settle(TERM, "n1", [run("r1", "j1", states.RUNNING)])
    ((kind, stop),) = peers.calls
    assert kind == "StopRun"
    assert stop.run_id == "r1"  # type: ignore[attr-defined]
    assert "not needed" in stop.reason  # type: ignore[attr-defined]


async def test_a_cancelled_job_whose_run_never_reached_its_node_ends_at_once() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(CancelJob("j1", "alice", False, "not needed", 3 * SECOND)).ok
    duties, consensus, peers = leader_over(log)
    await duties._settle(TERM, "n1", [])
    await duties._settle(TERM, "n1", [])  # asked again: nothing more
    await _drain_tasks()
    assert peers.calls == []  # never sent: it would only be stopped
    (revoke,) = consensus.proposed
    assert isinstance(revoke, RevokeAssignment)
    job = log.state.job("j1")
    assert job is not None
    assert (job.state, job.assignment) == (states.CANCELLED, None)
    assert "not needed" in job.reason
    # A copy that lands after all is stopped as stale.
    await duties._settle(TERM, "n1", [run("r1", "j1", states.STARTING)])
    assert [(kind, req.run_id) for kind, req in peers.calls] == [("StopRun", "r1")]  # type: ignore[attr-defined]


async def test_a_run_starting_past_the_start_timeout_is_stopped_as_lost() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.STARTING, None, "", 3 * SECOND)).ok
    duties, consensus, peers = leader_over(log, start_timeout_seconds=0.2)
    await duties._settle(TERM, "n1", [run("r1", "j1", states.STARTING)])
    assert peers.calls == []  # within its time
    await asyncio.sleep(0.3)
    await duties._settle(TERM, "n1", [run("r1", "j1", states.STARTING)])
    ((kind, stop),) = peers.calls
    assert kind == "StopRun"
    assert (stop.run_id, stop.lost) == ("r1", True)  # type: ignore[attr-defined]
    assert "did not start on n1 within 0.2 s" in stop.reason  # type: ignore[attr-defined]
    assert consensus.proposed == []  # its node records the end: it may still be starting


async def test_a_run_its_node_never_gets_is_given_up_once_no_start_is_in_flight() -> None:
    log = Log(ControlState(), term=TERM)
    job_spec = spec()
    job_spec.retries = 1
    assert log.apply(SubmitJob("j1", job_spec, "alice", "", SECOND)).ok
    assert log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND)).ok
    # A lease of 1.5 s makes calls time out after 0.5 s.
    duties, consensus, peers = leader_over(log, lease_seconds=1.5, start_timeout_seconds=1.0)
    peers.fail_with = rpc_error(grpc.StatusCode.INTERNAL, "the node's store failed")
    await duties._settle(TERM, "n1", [])
    await asyncio.sleep(0.8)
    await duties._settle(TERM, "n1", [])  # not overdue yet: sent again
    await _drain_tasks()
    assert [kind for kind, _ in peers.calls] == ["StartRun", "StartRun"]
    await asyncio.sleep(0.4)
    await duties._settle(TERM, "n1", [])  # overdue: sent no more ...
    await _drain_tasks()
    assert [kind for kind, _ in peers.calls] == ["StartRun", "StartRun"]
    assert consensus.proposed == []  # ... and given up only once no start may land
    await asyncio.sleep(1.0)
    await duties._settle(TERM, "n1", [])
    (lost,) = consensus.proposed
    assert isinstance(lost, ReportRun)
    assert lost.state == states.LOST
    job = log.state.job("j1")
    assert job is not None
    assert job.state == states.PENDING  # it retries, as its policy says
    assert "never started it within 1 s" in job.reason


async def test_nodes_without_runs_are_reconciled_less_often() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1", node="n1")
    # A lease of 0.3 s: the runs' nodes are asked every 0.1 s.
    duties, _, peers = leader_over(log, lease_seconds=0.3)
    loop = asyncio.create_task(duties._keep_reconciling(TERM))
    await asyncio.sleep(1.05)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    asked = [address for kind, address in peers.calls if kind == "ListRuns"]
    assert asked.count("n1:1") >= 5  # it holds a run: its lease is renewed
    assert asked.count("n2:1") == 1  # none there: IDLE_RECONCILE_SECONDS apart


class CountingView(FakeView):
    def __init__(self) -> None:
        self.looks = 0

    def nodes(self) -> list[types_pb2.NodeInfo]:
        self.looks += 1
        return super().nodes()


async def test_an_idle_leader_makes_no_plan() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")  # scheduled: nothing pending
    duties, consensus, _ = leader_over(log)
    view = CountingView()
    duties._view = view  # type: ignore[assignment]
    await duties._place(TERM)
    assert (view.looks, consensus.proposed) == (0, [])
    assert log.apply(SubmitJob("j2", spec(cpus=0, memory_bytes=0), "alice", "", SECOND)).ok
    duties._jobs = FakeJobs()  # type: ignore[assignment]
    await duties._place(TERM)
    assert view.looks == 1
    assert [type(c).__name__ for c in consensus.proposed] == ["AssignJob"]


async def _drain_tasks() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.3:4100: "
    "Failed to connect to remote host: Connection refused"
)


async def test_a_run_whose_only_start_was_refused_is_taken_back_and_its_attempt_kept() -> None:
    log = Log(ControlState(), term=TERM)
    assert log.apply(SubmitJob("j1", spec(), "alice", "", SECOND)).ok
    assert log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND)).ok
    duties, consensus, peers = leader_over(log)
    peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    job = log.state.job("j1")
    assert job is not None
    await duties._start(TERM, job)
    (revoke,) = consensus.proposed
    assert isinstance(revoke, RevokeAssignment)
    after = log.state.job("j1")
    assert after is not None
    assert (after.state, after.attempts) == (states.PENDING, 0)


async def test_a_start_that_may_have_arrived_is_never_taken_back() -> None:
    log = Log(ControlState(), term=TERM)
    assert log.apply(SubmitJob("j1", spec(), "alice", "", SECOND)).ok
    assert log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND)).ok
    duties, consensus, peers = leader_over(log)
    job = log.state.job("j1")
    assert job is not None
    # A deadline or a reset connection may come after the node took the run.
    peers.fail_with = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    await duties._start(TERM, job)
    # Even a later refusal does not prove that the first call never arrived.
    peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    await duties._start(TERM, job)
    assert consensus.proposed == []
    still = log.state.job("j1")
    assert still is not None
    assert still.state == states.SCHEDULED


@dataclass
class FakeJobs:
    published: list[list[str]] = field(default_factory=list)

    def publish(self, job_ids: list[str]) -> None:
        self.published.append(job_ids)


async def test_passes_plan_only_what_could_change_the_plan(
    full_plans: list[int],
) -> None:
    """A deep queue costs tens of ms to plan: a plan that placed nothing is not made
    again until something it was made from changed, and jobs submitted since are
    decided on top of it; watchers hear of the new waiting jobs only."""
    log = Log(ControlState(), term=TERM)
    duties, consensus, _ = leader_over(log)
    jobs = FakeJobs()
    duties._jobs = jobs  # type: ignore[assignment]
    view = FakeView()
    duties._view = view  # type: ignore[assignment]
    big = spec(gpus=4, cpus=0, memory_bytes=0)

    assert log.apply(SubmitJob("big", big, "alice", "", SECOND)).ok
    await duties._place(TERM)
    await duties._place(TERM)
    assert full_plans == [1]  # the second pass would have made the first plan again
    assert jobs.published == [["big"]]

    assert log.apply(SubmitJob("big2", big, "alice", "", SECOND)).ok
    await duties._place(TERM)
    assert full_plans == [1]  # decided on top of the last plan
    assert jobs.published[-1] == ["big2"]
    assert duties.waiting()["big2"][1] == 2

    assert log.apply(SubmitJob("small", spec(cpus=0, memory_bytes=0), "alice", "", SECOND)).ok
    await duties._place(TERM)  # on top of the last plan too; "small" fits: placed
    assert full_plans == [1]
    assert [type(command).__name__ for command in consensus.proposed] == ["AssignJob"]
    await duties._place(TERM)  # the assignment was applied: a plan from scratch
    assert full_plans == [1, 4]
    await duties._place(TERM)
    assert full_plans == [1, 4]

    view.gpus = 4  # n1 now offers 4 GPUs: planned from scratch, and "big" placed
    await duties._place(TERM)
    assert full_plans == [1, 4, 4]
    assert "big" not in duties.waiting()
