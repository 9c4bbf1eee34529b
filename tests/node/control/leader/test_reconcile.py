"""The leader's reconciliation with a node's own record of its runs
(node/control/leader/reconcile.py): a run the log no longer wants is stopped, what
the node knows that the log does not is committed, an assignment the node never
received is sent again, a cancel pending on a running job is delivered, and a run
that does not start in time is given up."""

from __future__ import annotations

import asyncio

import grpc

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ControlState,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
)
from murmur.node.jobspec import states
from tests.node.control.leader.fakes import (
    TERM,
    leader_over,
    let_tasks_run,
    placed,
    rpc_error,
    run,
)
from tests.node.control.queue.builders import SECOND, Log, spec


async def test_a_run_the_log_placed_elsewhere_is_stopped() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1", node="n2", run_id="r-new")
    leader = leader_over(log)
    # n1 comes back still running the job's old copy.
    await leader.wire().reconciler.settle("n1", [run("r-old", "j1", states.RUNNING)])
    assert [(kind, req.run_id) for kind, req in leader.peers.calls] == [("StopRun", "r-old")]  # type: ignore[attr-defined]
    (_, stop) = leader.peers.calls[0]
    assert stop.term == TERM  # type: ignore[attr-defined]


async def test_a_run_of_an_unknown_job_is_stopped_and_an_ended_one_left_alone() -> None:
    log = Log(ControlState(), term=TERM)
    leader = leader_over(log)
    await leader.wire().reconciler.settle(
        "n1", [run("r9", "ghost", states.RUNNING), run("r8", "ghost", states.SUCCEEDED)]
    )
    assert [(kind, req.run_id) for kind, req in leader.peers.calls] == [("StopRun", "r9")]  # type: ignore[attr-defined]
    assert leader.consensus.proposed == []


async def test_what_the_node_knows_and_the_log_does_not_is_committed() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    leader = leader_over(log)
    # The run ended while no leader listened: the node's record settles it.
    await leader.wire().reconciler.settle("n1", [run("r1", "j1", states.SUCCEEDED, exit_code=0)])
    assert leader.peers.calls == []
    (report,) = leader.consensus.proposed
    assert isinstance(report, ReportRun)
    assert (report.run_id, report.state, report.exit_code) == ("r1", states.SUCCEEDED, 0)
    job = log.state.job("j1")
    assert job is not None
    assert job.state == states.SUCCEEDED


async def test_an_assignment_the_node_never_received_is_sent_again() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    leader = leader_over(log)
    async with leader.term() as term:
        await leader.wire(term).reconciler.settle("n1", [])
        await let_tasks_run()
    ((kind, start),) = leader.peers.calls
    assert kind == "StartRun"
    assert (start.run_id, start.term) == ("r1", TERM)  # type: ignore[attr-defined]


async def test_an_assignment_of_an_earlier_term_is_sent_as_this_leaders() -> None:
    """The node fences the call with the sender's term: a run an earlier leader
    assigned is not refused as stale when this leader sends it again."""
    log = Log(ControlState(), term=TERM - 1)
    placed(log, "j1")
    log.term = TERM
    leader = leader_over(log)
    async with leader.term() as term:
        await leader.wire(term).reconciler.settle("n1", [])
        await let_tasks_run()
    ((kind, start),) = leader.peers.calls
    assert kind == "StartRun"
    assert (start.term, start.sender_term) == (TERM - 1, TERM)  # type: ignore[attr-defined]


async def test_a_cancel_pending_on_a_running_job_is_delivered() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "running", 3 * SECOND)).ok
    assert log.apply(CancelJob("j1", "alice", False, "not needed", 4 * SECOND)).ok
    leader = leader_over(log)
    await leader.wire().reconciler.settle("n1", [run("r1", "j1", states.RUNNING)])
    ((kind, stop),) = leader.peers.calls
    assert kind == "StopRun"
    assert stop.run_id == "r1"  # type: ignore[attr-defined]
    assert "not needed" in stop.reason  # type: ignore[attr-defined]


async def test_a_cancelled_job_whose_run_never_reached_its_node_ends_at_once() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(CancelJob("j1", "alice", False, "not needed", 3 * SECOND)).ok
    leader = leader_over(log)
    async with leader.term() as term:
        reconciler = leader.wire(term).reconciler
        await reconciler.settle("n1", [])
        await reconciler.settle("n1", [])  # asked again: nothing more
        await let_tasks_run()
        assert leader.peers.calls == []  # never sent: it would only be stopped
        (revoke,) = leader.consensus.proposed
        assert isinstance(revoke, RevokeAssignment)
        job = log.state.job("j1")
        assert job is not None
        assert (job.state, job.assignment) == (states.CANCELLED, None)
        assert "not needed" in job.reason
        # A copy that lands after all is stopped as stale.
        await reconciler.settle("n1", [run("r1", "j1", states.STARTING)])
    assert [(kind, req.run_id) for kind, req in leader.peers.calls] == [("StopRun", "r1")]  # type: ignore[attr-defined]


async def test_a_run_starting_past_the_start_timeout_is_stopped_as_lost() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.STARTING, None, "", 3 * SECOND)).ok
    leader = leader_over(log, start_timeout_seconds=0.2)
    reconciler = leader.wire().reconciler
    await reconciler.settle("n1", [run("r1", "j1", states.STARTING)])
    assert leader.peers.calls == []  # within its time
    await asyncio.sleep(0.3)
    await reconciler.settle("n1", [run("r1", "j1", states.STARTING)])
    ((kind, stop),) = leader.peers.calls
    assert kind == "StopRun"
    assert (stop.run_id, stop.lost) == ("r1", True)  # type: ignore[attr-defined]
    assert "did not start on n1 within 0.2 s" in stop.reason  # type: ignore[attr-defined]
    assert leader.consensus.proposed == []  # its node records the end: it may still be starting


async def test_a_run_its_node_never_gets_is_given_up_once_no_start_is_in_flight() -> None:
    log = Log(ControlState(), term=TERM)
    job_spec = spec()
    job_spec.retries = 1
    assert log.apply(SubmitJob("j1", job_spec, "alice", "", SECOND)).ok
    assert log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND)).ok
    # A lease of 1.5 s makes calls time out after 0.5 s.
    leader = leader_over(log, lease_seconds=1.5, start_timeout_seconds=1.0)
    leader.peers.fail_with = rpc_error(grpc.StatusCode.INTERNAL, "the node's store failed")
    async with leader.term() as term:
        reconciler = leader.wire(term).reconciler
        await reconciler.settle("n1", [])
        await asyncio.sleep(0.8)
        await reconciler.settle("n1", [])  # not overdue yet: sent again
        await let_tasks_run()
        assert [kind for kind, _ in leader.peers.calls] == ["StartRun", "StartRun"]
        await asyncio.sleep(0.4)
        await reconciler.settle("n1", [])  # overdue: sent no more ...
        await let_tasks_run()
        assert [kind for kind, _ in leader.peers.calls] == ["StartRun", "StartRun"]
        assert leader.consensus.proposed == []  # ... and given up only once no start may land
        await asyncio.sleep(1.0)
        await reconciler.settle("n1", [])
    (lost,) = leader.consensus.proposed
    assert isinstance(lost, ReportRun)
    assert lost.state == states.LOST
    job = log.state.job("j1")
    assert job is not None
    assert job.state == states.PENDING  # it retries, as its policy says
    assert "never started it within 1 s" in job.reason
