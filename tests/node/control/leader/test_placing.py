"""Placement passes (node/control/leader/placing.py): an idle leader plans nothing,
a pass plans only what could change the plan, and committed assignments go to
their nodes."""

from __future__ import annotations

from murmur.node.control.queue import ControlState, SubmitJob
from murmur.v1 import types_pb2
from tests.node.control.leader.fakes import (
    TERM,
    FakeView,
    leader_over,
    let_tasks_run,
    placed,
)
from tests.node.control.queue.builders import SECOND, Log, spec


class CountingView(FakeView):
    def __init__(self) -> None:
        self.looks = 0

    def nodes(self) -> list[types_pb2.NodeInfo]:
        self.looks += 1
        return super().nodes()


async def test_an_idle_leader_makes_no_plan() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")  # scheduled: nothing pending
    view = CountingView()
    leader = leader_over(log, view=view)
    async with leader.term() as term:
        placer = leader.wire(term).placer
        await placer.place()
        assert (view.looks, leader.consensus.proposed) == (0, [])
        assert log.apply(SubmitJob("j2", spec(cpus=0, memory_bytes=0), "alice", "", SECOND)).ok
        await placer.place()
        await let_tasks_run()
    assert view.looks == 1
    assert [type(c).__name__ for c in leader.consensus.proposed] == ["AssignJob"]
    assert [kind for kind, _ in leader.peers.calls] == ["StartRun"]


async def test_an_unreachable_node_is_offered_nothing() -> None:
    log = Log(ControlState(), term=TERM)
    assert log.apply(SubmitJob("j1", spec(cpus=0, memory_bytes=0), "alice", "", SECOND)).ok
    leader = leader_over(log)
    parts = leader.wire()
    parts.calls.unreachable.add("n1")
    await parts.placer.place()
    assert leader.consensus.proposed == []
    assert parts.placer.waiting()["j1"][0] != ""


async def test_passes_plan_only_what_could_change_the_plan(
    full_plans: list[int],
) -> None:
    """A deep queue costs tens of ms to plan: a plan that placed nothing is not made
    again until something it was made from changed, and jobs submitted since are
    decided on top of it; watchers hear of the new waiting jobs only."""
    log = Log(ControlState(), term=TERM)
    leader = leader_over(log)
    jobs, view = leader.jobs, leader.view
    async with leader.term() as term:
        placer = leader.wire(term).placer
        big = spec(gpus=4, cpus=0, memory_bytes=0)

        assert log.apply(SubmitJob("big", big, "alice", "", SECOND)).ok
        await placer.place()
        await placer.place()
        assert full_plans == [1]  # the second pass would have made the first plan again
        assert jobs.published == [["big"]]

        assert log.apply(SubmitJob("big2", big, "alice", "", SECOND)).ok
        await placer.place()
        assert full_plans == [1]  # decided on top of the last plan
        assert jobs.published[-1] == ["big2"]
        assert placer.waiting()["big2"][1] == 2

        small = spec(cpus=0, memory_bytes=0)
        assert log.apply(SubmitJob("small", small, "alice", "", SECOND)).ok
        await placer.place()  # on top of the last plan too; "small" fits: placed
        assert full_plans == [1]
        assert [type(command).__name__ for command in leader.consensus.proposed] == ["AssignJob"]
        await placer.place()  # the assignment was applied: a plan from scratch
        assert full_plans == [1, 4]
        await placer.place()
        assert full_plans == [1, 4]

        view.gpus = 4  # n1 now offers 4 GPUs: planned from scratch, and "big" placed
        await placer.place()
        assert full_plans == [1, 4, 4]
        assert "big" not in placer.waiting()
