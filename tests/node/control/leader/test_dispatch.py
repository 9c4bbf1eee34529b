"""Handing assignments to nodes (node/control/leader/dispatch.py): a run whose only
StartRun was refused is taken back without spending an attempt; one whose call may
have arrived never is."""

from __future__ import annotations

import grpc

from murmur.node.config import host_of
from murmur.node.control.queue import (
    AssignJob,
    ControlState,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
)
from murmur.node.control.queue.commands import RankPlacement
from murmur.node.jobspec import states
from murmur.v1 import node_pb2
from tests.node.control.leader.fakes import REFUSED, TERM, leader_over, rpc_error
from tests.node.control.queue.builders import SECOND, Log, spec


def assigned(log: Log) -> None:
    assert log.apply(SubmitJob("j1", spec(), "alice", "", SECOND)).ok
    assert log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND)).ok


async def test_a_run_whose_only_start_was_refused_is_taken_back_and_its_attempt_kept() -> None:
    log = Log(ControlState(), term=TERM)
    assigned(log)
    leader = leader_over(log)
    leader.peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    job = log.state.job("j1")
    assert job is not None
    parts = leader.wire()
    await parts.dispatch.start(job, job.runs[0])
    (revoke,) = leader.consensus.proposed
    assert isinstance(revoke, RevokeAssignment)
    after = log.state.job("j1")
    assert after is not None
    assert (after.state, after.attempts) == (states.PENDING, 0)
    assert parts.calls.unreachable == {"n1"}  # offered nothing until it answers


async def test_a_start_that_may_have_arrived_is_never_taken_back() -> None:
    log = Log(ControlState(), term=TERM)
    assigned(log)
    leader = leader_over(log)
    dispatch = leader.wire().dispatch
    job = log.state.job("j1")
    assert job is not None
    # A deadline or a reset connection may come after the node took the run.
    leader.peers.fail_with = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    await dispatch.start(job, job.runs[0])
    # Even a later refusal does not prove that the first call never arrived.
    leader.peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    await dispatch.start(job, job.runs[0])
    assert leader.consensus.proposed == []
    still = log.state.job("j1")
    assert still is not None
    assert still.state == states.SCHEDULED


async def test_a_run_its_node_will_not_take_is_lost() -> None:
    log = Log(ControlState(), term=TERM)
    assigned(log)
    leader = leader_over(log)
    leader.peers.fail_with = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "GPU 0 is busy")
    job = log.state.job("j1")
    assert job is not None
    await leader.wire().dispatch.start(job, job.runs[0])
    (lost,) = leader.consensus.proposed
    assert isinstance(lost, ReportRun)
    assert lost.state == states.LOST
    assert "could not start on n1: GPU 0 is busy" in lost.reason
    assert leader.duties.stats.node_calls_failed == 1


def gang_assigned(log: Log) -> None:
    assert log.apply(SubmitJob("g", spec(nodes=2, gpus=1), "alice", "", SECOND)).ok
    rank_1 = RankPlacement("n2", (0,))
    assert log.apply(AssignJob("g", "n1", "r1", 1, (0,), 2 * SECOND, (rank_1,), 29501)).ok


async def test_each_rank_of_a_gang_goes_to_its_node_with_where_the_gang_meets() -> None:
    log = Log(ControlState(), term=TERM)
    gang_assigned(log)
    leader = leader_over(log)
    job = log.state.job("g")
    assert job is not None
    dispatch = leader.wire().dispatch
    for rank in job.runs:
        await dispatch.start(job, rank)
    starts = [call for kind, call in leader.peers.calls if kind == "StartRun"]
    assert all(isinstance(start, node_pb2.StartRunRequest) for start in starts)
    gangs = sorted(
        (start.gang.node_rank, start.gang.master_addr, start.gang.master_port, start.run_id)
        for start in starts
        if isinstance(start, node_pb2.StartRunRequest)
    )
    assert gangs == [(0, "n1", 29501, "r1"), (1, "n1", 29501, "r1")]


async def test_a_gangs_rank_whose_only_start_was_refused_is_lost_as_never_reached() -> None:
    """Its node never had it, but the other rank's may have: the rank ends (the
    other is stopped), and the job is requeued freely once it has."""
    log = Log(ControlState(), term=TERM)
    gang_assigned(log)
    leader = leader_over(log)
    leader.peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    job = log.state.job("g")
    assert job is not None
    await leader.wire().dispatch.start(job, job.runs[1])
    (lost,) = leader.consensus.proposed
    assert isinstance(lost, ReportRun)
    assert (lost.node, lost.state) == ("n2", states.LOST)
    assert states.lost_with_its_node(lost.reason)
    after = log.state.job("g")
    assert after is not None
    assert after.gang_stop is not None
    assert after.gang_stop.with_node
    assert [rank.node for rank in after.live_runs] == ["n1"]


def test_the_host_of_an_address() -> None:
    assert host_of("10.0.0.5:7000") == "10.0.0.5"
    assert host_of("[fd00::1]:7000") == "fd00::1"
    assert host_of("gpu-07.lab:7000") == "gpu-07.lab"
    assert host_of("gpu-07") == "gpu-07"
