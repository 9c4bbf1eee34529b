"""Handing assignments to nodes (node/control/leader/dispatch.py): a run whose only
StartRun was refused is taken back without spending an attempt; one whose call may
have arrived never is."""

from __future__ import annotations

import grpc

from murmur.node.control.queue import (
    AssignJob,
    ControlState,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
)
from murmur.node.jobspec import states
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
    await parts.dispatch.start(job)
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
    await dispatch.start(job)
    # Even a later refusal does not prove that the first call never arrived.
    leader.peers.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED)
    await dispatch.start(job)
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
    await leader.wire().dispatch.start(job)
    (lost,) = leader.consensus.proposed
    assert isinstance(lost, ReportRun)
    assert lost.state == states.LOST
    assert "could not start on n1: GPU 0 is busy" in lost.reason
    assert leader.duties.stats.node_calls_failed == 1
