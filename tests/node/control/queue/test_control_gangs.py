"""Gangs in the control state: a multi-node job's run is one assignment per rank,
placed whole, started and ended together."""

from __future__ import annotations

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ClusterJob,
    ControlState,
    NodeLost,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
)
from murmur.node.control.queue.commands import RankPlacement
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_GANGS
from murmur.node.jobspec import states
from murmur.v1 import control_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

PORT = 29500


def gang_log(*, retries: int = 0, nodes: int = 2, gpus: int = 4) -> Log:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(SubmitJob("g", spec(gpus=gpus, nodes=nodes, retries=retries), "alice", "", 0))
    return log


def place(log: Log, *nodes: str, run_id: str = "r1", attempt: int = 1, at: int = SECOND) -> None:
    gpus = tuple(range(log.state.job("g").spec.gpus.count))  # type: ignore[union-attr]
    first, *others = nodes
    others_placed = tuple(RankPlacement(node, gpus) for node in others)
    result = log.apply(AssignJob("g", first, run_id, attempt, gpus, at, others_placed, PORT))
    assert result.ok, result


def report(log: Log, node: str, state: str, at: int, *, code: int | None = None) -> ClusterJob:
    job = log.state.job("g")
    assert job is not None
    rank = job.rank_on(node)
    assert rank is not None, f"no live rank on {node}"
    result = log.apply(ReportRun("g", rank.run_id, node, state, code, "", at))
    assert result.ok, result
    changed = log.state.job("g")
    assert changed is not None
    return changed


def held_gpus(state: ControlState, node: str) -> int:
    return sum(
        len(rank.gpu_indices)
        for job in state.active_on(node)
        if (rank := job.rank_on(node)) is not None
    )


def test_a_gang_is_assigned_whole_one_rank_per_node_sharing_the_run_id() -> None:
    log = gang_log()
    place(log, "a", "b")
    job = log.state.job("g")
    assert job is not None
    assert job.state == states.SCHEDULED
    assert [(rank.rank, rank.node, rank.run_id) for rank in job.runs] == [
        (0, "a", "r1"), (1, "b", "r1"),
    ]  # fmt: skip
    assert {rank.master_port for rank in job.runs} == {PORT}
    assert held_gpus(log.state, "a") == held_gpus(log.state, "b") == 4
    assert "2 nodes" in job.reason


def test_one_rank_that_cannot_have_its_node_refuses_the_whole_gang() -> None:
    """All or nothing: no gang ever holds part of what it needs."""
    log = gang_log()
    log.apply(SubmitJob("other", spec(gpus=4), "bob", "", 0))
    log.apply(AssignJob("other", "b", "o1", 1, (0, 1, 2, 3), 0))
    result = log.apply(
        AssignJob(
            "g", "a", "r1", 1, (0, 1, 2, 3), SECOND, (RankPlacement("b", (0, 1, 2, 3)),), PORT
        )
    )
    assert not result.ok
    assert "held by job other" in result.message
    assert held_gpus(log.state, "a") == 0
    assert log.state.active_on("a") == []


def test_a_gangs_shape_is_checked() -> None:
    log = gang_log()
    gpus = (0, 1, 2, 3)
    wrong = [
        AssignJob("g", "a", "r1", 1, gpus, SECOND),  # one rank of two
        AssignJob("g", "a", "r1", 1, gpus, SECOND, (RankPlacement("a", gpus),), PORT),
        AssignJob("g", "a", "r1", 1, gpus, SECOND, (RankPlacement("b", (0,)),), PORT),
        AssignJob("g", "a", "r1", 1, gpus, SECOND, (RankPlacement("b", gpus),), 0),
    ]
    for command in wrong:
        result = log.apply(command)
        assert result.error is ErrorKind.INVALID, command
    assert log.state.job("g").state == states.PENDING  # type: ignore[union-attr]


def test_the_gang_runs_once_every_rank_runs_and_succeeds_once_every_rank_did() -> None:
    log = gang_log()
    place(log, "a", "b")
    assert report(log, "a", states.STARTING, 2 * SECOND).state == states.STARTING
    job = report(log, "a", states.RUNNING, 3 * SECOND)
    assert job.state == states.STARTING
    assert "waiting for 1 more rank" in job.reason
    job = report(log, "b", states.RUNNING, 4 * SECOND)
    assert job.state == states.RUNNING
    job = report(log, "b", states.SUCCEEDED, 10 * SECOND, code=0)
    assert job.state == states.RUNNING  # rank 0 still runs
    assert held_gpus(log.state, "b") == 0  # the ended rank gave its GPUs back
    assert held_gpus(log.state, "a") == 4
    job = report(log, "a", states.SUCCEEDED, 12 * SECOND, code=0)
    assert job.state == states.SUCCEEDED
    assert len(job.past_runs[-1].ranks) == 2
    usage = sum(bucket.gpu_seconds for bucket in log.state.usage_buckets())
    assert usage == 4 * (12 - 3) + 4 * (10 - 4)  # each rank from its start to its end


def test_one_rank_failing_stops_the_others_and_the_job_retries_as_one() -> None:
    log = gang_log(retries=1)
    place(log, "a", "b")
    report(log, "a", states.RUNNING, 2 * SECOND)
    report(log, "b", states.RUNNING, 2 * SECOND)
    job = report(log, "b", states.FAILED, 5 * SECOND, code=3)
    assert job.state == states.RUNNING
    assert job.gang_stop is not None
    assert job.gang_stop.reason == "rank 1 on b: exited with code 3"
    assert job.stopping
    assert "stopping the other ranks" in job.reason
    assert held_gpus(log.state, "a") == 4  # until its node says it stopped
    job = report(log, "a", states.CANCELLED, 6 * SECOND)
    assert job.state == states.PENDING
    assert job.attempts == 1  # a retry spent
    assert job.not_before_us > 6 * SECOND
    assert "rank 1 on b: exited with code 3" in job.reason
    assert job.exit_code == 3
    assert job.gang_stop is None
    assert log.state.active_on("a") == log.state.active_on("b") == []


def test_a_rank_lost_with_its_node_requeues_the_gang_without_spending_an_attempt() -> None:
    log = gang_log()
    place(log, "a", "b")
    report(log, "a", states.RUNNING, 2 * SECOND)
    report(log, "b", states.RUNNING, 2 * SECOND)
    assert log.apply(NodeLost("b", "left the cluster", 5 * SECOND)).ok
    job = log.state.job("g")
    assert job is not None
    assert job.state == states.RUNNING
    assert job.gang_stop is not None
    assert job.gang_stop.with_node
    assert held_gpus(log.state, "b") == 0
    job = report(log, "a", states.CANCELLED, 6 * SECOND)
    assert job.state == states.PENDING
    assert job.attempts == 0
    assert job.not_before_us == 0
    assert job.reason.startswith("requeued: rank 1 on b: lost with node b")


def test_a_rank_that_never_reached_its_node_requeues_the_gang_freely() -> None:
    log = gang_log()
    place(log, "a", "b")
    run_id = "r1"
    reason = f"{states.NOT_REACHED_REASON}: b refused the connection"
    assert log.apply(ReportRun("g", run_id, "b", states.LOST, None, reason, 2 * SECOND)).ok
    job = report(log, "a", states.CANCELLED, 3 * SECOND)
    assert job.state == states.PENDING
    assert job.attempts == 0


def test_cancel_stops_every_rank_and_ends_the_job_once_all_stopped() -> None:
    log = gang_log(retries=3, nodes=3)
    place(log, "a", "b", "c")
    report(log, "a", states.RUNNING, 2 * SECOND)
    assert log.apply(CancelJob("g", "alice", False, "", 3 * SECOND)).ok
    job = log.state.job("g")
    assert job is not None
    assert job.stopping
    assert len(job.live_runs) == 3
    report(log, "b", states.CANCELLED, 4 * SECOND)
    job = report(log, "a", states.CANCELLED, 4 * SECOND)
    assert job.state == states.STARTING  # rank 2 never ran
    assert "waiting for 1 rank(s) to stop" in job.reason
    job = report(log, "c", states.CANCELLED, 5 * SECOND)
    assert job.state == states.CANCELLED


def test_a_gangs_run_is_not_taken_back_whole() -> None:
    log = gang_log()
    place(log, "a", "b")
    result = log.apply(RevokeAssignment("g", "r1", "refused", 2 * SECOND))
    assert result.error is ErrorKind.INVALID
    assert "gang" in result.message


def test_a_snapshot_keeps_every_rank_and_a_stop_under_way() -> None:
    log = gang_log(nodes=3, retries=1)
    place(log, "a", "b", "c")
    report(log, "a", states.RUNNING, 2 * SECOND)
    report(log, "c", states.FAILED, 3 * SECOND, code=1)
    data = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(data)
    assert message.format == SNAPSHOT_FORMAT_WITH_GANGS
    restored = ControlState.from_snapshot(data, retry_backoff_base_us=SECOND)
    assert restored.jobs() == log.state.jobs()
    for node in ("a", "b", "c"):
        assert restored.active_on(node) == log.state.active_on(node)
    job = restored.job("g")
    assert job is not None
    assert job.gang_stop == log.state.job("g").gang_stop  # type: ignore[union-attr]
