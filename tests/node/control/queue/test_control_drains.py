"""Drains in the control log: SetNodeDrain's rules, its place in snapshots, and
placement that honours it whatever the offers (gossip) say."""

from __future__ import annotations

import itertools

import pytest

from murmur.node.control.leader.placement import GpuOffer, NodeOffer, plan_cluster, waiting_reasons
from murmur.node.control.leader.planner import QueuePlanner
from murmur.node.control.queue import (
    AssignJob,
    ControlSnapshotError,
    ControlState,
    DrainRecord,
    ErrorKind,
    SetNodeDrain,
    SubmitJob,
    decode,
    encode,
)
from murmur.node.jobspec import states
from murmur.scheduler.slices import finish
from murmur.v1 import control_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

BOTH = frozenset({"process", "docker"})


def offer(name: str, gpus: int = 4) -> NodeOffer:
    """A node as gossip shows it: alive, open."""
    return NodeOffer(
        name=name,
        gpus=tuple(GpuOffer(index, "A100-80GB", 80 << 30) for index in range(gpus)),
        cpus=32,
        memory_bytes=256 << 30,
        runtimes=BOTH,
    )


def drain(log: Log, node: str, draining: bool = True, at: int = 5 * SECOND) -> None:
    result = log.apply(SetNodeDrain(node, draining, "admin (via n1)", at))
    assert result.ok, result


def test_the_command_survives_its_bytes() -> None:
    command = SetNodeDrain("gpu2", True, "admin", 123)
    assert decode(encode(command)) == command


def test_a_drain_is_kept_and_an_undrain_keeps_the_record() -> None:
    log = Log()
    assert log.state.drained_nodes() == frozenset()
    drain(log, "gpu2", at=7)
    drain(log, "gpu1", at=8)
    assert log.state.drained_nodes() == {"gpu1", "gpu2"}
    assert log.state.drains() == [
        DrainRecord("gpu1", True, "admin (via n1)", 8),
        DrainRecord("gpu2", True, "admin (via n1)", 7),
    ]
    # Again: nothing changes, the first record stays.
    drain(log, "gpu2", at=9)
    assert log.state.drains()[1].at_us == 7
    drain(log, "gpu2", False, at=10)
    assert log.state.drained_nodes() == {"gpu1"}
    assert DrainRecord("gpu2", False, "admin (via n1)", 10) in log.state.drains()


def test_a_drain_must_name_a_node() -> None:
    result = Log().apply(SetNodeDrain("", True, "admin", 1))
    assert result.error is ErrorKind.INVALID


def test_an_assignment_to_a_drained_node_is_stale_even_from_an_earlier_plan() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(gpus=4), "alice", "", SECOND))
    planned = AssignJob("j1", "gpu2", "r1", 1, (0, 1, 2, 3), 6 * SECOND)  # made before the drain
    drain(log, "gpu2")
    refused = log.apply(planned)
    assert refused.error is ErrorKind.STALE
    assert "gpu2 is draining" in refused.message
    job = log.state.job("j1")
    assert job is not None
    assert job.state == states.PENDING
    drain(log, "gpu2", False, at=7 * SECOND)
    assert log.apply(AssignJob("j1", "gpu2", "r2", 1, (0, 1, 2, 3), 8 * SECOND)).ok


def test_drains_go_into_a_snapshot_of_the_new_format_only_when_there_are_any() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(), "alice", "", SECOND))
    plain = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(plain)
    assert message.format == 1  # what versions without drains read
    drain(log, "gpu2")
    drain(log, "gpu1", False, at=9)
    data = log.state.snapshot()
    assert control_pb2.ControlSnapshot.FromString(data).format == 2
    restored = ControlState.from_snapshot(data)
    assert restored.drains() == log.state.drains()
    assert restored.drained_nodes() == {"gpu2"}
    assert restored.snapshot() == data
    assert ControlState.from_snapshot(plain).drained_nodes() == frozenset()
    # The drain holds against assignments after a restore too.
    after = Log(restored)
    assert after.apply(AssignJob("j1", "gpu2", "r1", 1, (), 10 * SECOND)).error is ErrorKind.STALE


def test_a_snapshot_of_an_unknown_format_or_a_node_drained_twice_is_refused() -> None:
    newer = control_pb2.ControlSnapshot(format=99).SerializeToString()
    with pytest.raises(ControlSnapshotError, match="format 99"):
        ControlState.from_snapshot(newer)
    twice = control_pb2.ControlSnapshot(format=2)
    twice.drains.add(node="gpu2", draining=True)
    twice.drains.add(node="gpu2", draining=False)
    with pytest.raises(ControlSnapshotError, match="twice"):
        ControlState.from_snapshot(twice.SerializeToString())


def test_placement_closes_a_drained_node_whatever_gossip_says() -> None:
    log = Log()
    drain(log, "gpu2")
    log.apply(SubmitJob("wide", spec(gpus=4), "alice", "", SECOND))
    log.apply(SubmitJob("narrow", spec(gpus=1), "alice", "", SECOND))
    # gpu2 is the only node where "wide" fits; gpu1 takes only "narrow".
    offers = [offer("gpu1", gpus=2), offer("gpu2", gpus=8)]
    counter = itertools.count()
    plan = plan_cluster(log.state, offers, 10 * SECOND, new_run_id=lambda: f"r{next(counter)}")
    assert [(a.job_id, a.node) for a in plan.assignments] == [("narrow", "gpu1")]
    reason, _ = waiting_reasons(plan)["wide"]
    assert "draining" in reason
    drain(log, "gpu2", False, at=20 * SECOND)
    plan = plan_cluster(log.state, offers, 30 * SECOND, new_run_id=lambda: f"r{next(counter)}")
    assert {(a.job_id, a.node) for a in plan.assignments} == {("wide", "gpu2"), ("narrow", "gpu1")}


def test_the_queue_planner_plans_again_after_a_drain() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(gpus=1), "alice", "", SECOND))
    planner = QueuePlanner()
    offers = [offer("gpu2")]
    first = finish(planner.plan(log.state, offers, 10 * SECOND, new_run_id=lambda: "r1"))
    assert [a.node for a in first.assignments] == ["gpu2"]
    drain(log, "gpu2")  # the assignment was never committed; the node is drained now
    second = finish(planner.plan(log.state, offers, 11 * SECOND, new_run_id=lambda: "r2"))
    assert second.assignments == ()
    assert "draining" in waiting_reasons(second)["j1"][0]
    # Submissions on top of the drained plan stay off the node too.
    log.apply(SubmitJob("j2", spec(gpus=1), "alice", "", 12 * SECOND))
    third = finish(planner.plan(log.state, offers, 13 * SECOND, new_run_id=lambda: "r3"))
    assert third.assignments == ()
    assert set(waiting_reasons(third)) == {"j1", "j2"}


def test_an_offer_closed_for_its_own_reason_keeps_it() -> None:
    log = Log()
    drain(log, "gpu2")
    log.apply(SubmitJob("j1", spec(gpus=1), "alice", "", SECOND))
    dead = NodeOffer("gpu2", (), 1, 0, BOTH, schedulable=False, unschedulable_reason="dead")
    plan = plan_cluster(log.state, [dead], 10 * SECOND, new_run_id=str)
    assert "dead" in waiting_reasons(plan)["j1"][0]
