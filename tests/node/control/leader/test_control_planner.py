"""The queue planner spares work, never changes the plan: after any history of
submissions, assignments, runs ending, offers changing and time passing, its plan
is the one ``plan_in_slices`` makes from scratch."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur import scheduler
from murmur.node.control.leader.placement import (
    ClusterPlan,
    NodeOffer,
    plan_in_slices,
)
from murmur.node.control.leader.planner import QueuePlanner
from murmur.node.control.queue import ControlState, ReportRun, SubmitJob
from murmur.node.jobspec import states
from murmur.scheduler.slices import finish
from murmur.v1 import types_pb2
from tests.node.control.leader.test_control_placement import COUNTED, job_specs, offer, offers
from tests.node.control.queue.builders import SECOND, Log, end_run, spec


def with_dataset(job_spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    named = types_pb2.JobSpec()
    named.CopyFrom(job_spec)
    named.datasets.append("imagenet")
    return named


def plain(job_spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    """One node, default priority (a new job goes to the end of the queue), at least
    one GPU (the nodes fill up, and jobs wait)."""
    single = types_pb2.JobSpec()
    single.CopyFrom(job_spec)
    single.nodes = 1
    single.priority = 0
    single.gpus.count = max(1, single.gpus.count)
    return single


def every_runtime(nodes: list[NodeOffer]) -> list[NodeOffer]:
    return [dataclasses.replace(node, runtimes=frozenset({"process", "docker"})) for node in nodes]


def histories(
    specs: st.SearchStrategy[types_pb2.JobSpec], nodes: st.SearchStrategy[list[NodeOffer]]
) -> st.SearchStrategy[list[tuple[str, object]]]:
    submit = st.tuples(st.just("submit"), st.lists(specs, min_size=1, max_size=4))
    plan = st.tuples(st.just("plan"), st.none())
    others = st.one_of(
        st.tuples(st.just("end"), st.integers(0, 20)),
        st.tuples(st.just("offers"), nodes),
        st.tuples(st.just("wait"), st.integers(1, 60)),
    )
    # Mostly submissions and plans: a full queue is where the planner spares work.
    return st.lists(st.one_of(submit, plan, submit, plan, submit, plan, others), max_size=40)


any_specs = st.one_of(job_specs, job_specs, job_specs, job_specs.map(with_dataset))
any_history = histories(any_specs, offers())
# Where new submissions can be decided on top of the last plan: one pass, one node
# each, at the end of the queue (a dataset now and then, which they may not name).
simple_nodes = offers().map(every_runtime)
simple_specs = st.one_of(*[job_specs] * 7, job_specs.map(with_dataset)).map(plain)
simple_history = histories(simple_specs, simple_nodes)


def comparable(plan: ClusterPlan) -> ClusterPlan:
    """Run ids are fresh in every plan: everything else must match."""
    return dataclasses.replace(
        plan,
        assignments=tuple(dataclasses.replace(command, run_id="") for command in plan.assignments),
    )


policies = st.sampled_from((scheduler.DEFAULT_POLICY, COUNTED))
"""Jobs counted as they name their resources, or with a default request."""


@settings(max_examples=100, deadline=None)
@given(offers(), any_history, policies)
def test_the_planner_plans_what_a_plan_from_scratch_plans(
    first_offers: list[NodeOffer], history: list[tuple[str, object]], policy: scheduler.Policy
) -> None:
    check_history(first_offers, history, policy)


@settings(max_examples=150, deadline=None)
@given(simple_nodes, simple_history, policies)
def test_jobs_decided_on_top_of_the_last_plan_are_planned_as_from_scratch(
    first_offers: list[NodeOffer], history: list[tuple[str, object]], policy: scheduler.Policy
) -> None:
    check_history(first_offers, history, policy)


def check_history(
    first_offers: list[NodeOffer],
    history: list[tuple[str, object]],
    policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
) -> None:
    log = Log()
    planner = QueuePlanner(slice_size=3, policy=policy)
    nodes = first_offers
    now = 10 * SECOND
    submitted = itertools.count()
    run_ids = itertools.count()
    for action, argument in [*history, ("plan", None), ("plan", None)]:
        if action == "submit":
            assert isinstance(argument, list)
            for job_spec in argument:
                log.apply(SubmitJob(f"j{next(submitted)}", job_spec, "u", "", now))
        elif action == "end":
            assert isinstance(argument, int)
            active = [job for node in nodes for job in log.state.active_on(node.name)]
            if active:
                end_run(log, active[argument % len(active)], states.FAILED, 1, now)
        elif action == "offers":
            assert isinstance(argument, list)
            nodes = argument
        elif action == "wait":
            assert isinstance(argument, int)
            now += argument * SECOND
        else:
            expected = finish(
                plan_in_slices(log.state, nodes, now, policy=policy, new_run_id=lambda: "")
            )
            plan = finish(
                planner.plan(log.state, nodes, now, new_run_id=lambda: f"r{next(run_ids)}")
            )
            assert comparable(plan) == comparable(expected)
            for command in plan.assignments:
                assert log.apply(command).ok


def test_new_submissions_are_decided_on_top_and_an_unchanged_queue_not_at_all() -> None:
    log = Log()
    nodes = [offer("n1", 1)]
    planner = QueuePlanner()
    log.apply(SubmitJob("a", spec(gpus=1), "u", "", 0))
    log.apply(SubmitJob("b", spec(gpus=1), "u", "", 0))
    first = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: "r1"))
    for command in first.assignments:
        log.apply(command)
    second = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: "r2"))
    assert second.assignments == ()
    assert finish(planner.plan(log.state, nodes, 2 * SECOND, new_run_id=lambda: "")) is second
    log.apply(SubmitJob("c", spec(gpus=1), "u", "", 0))
    third = finish(planner.plan(log.state, nodes, 2 * SECOND, new_run_id=lambda: ""))
    assert [entry.job_id for entry in third.waiting] == ["b", "c"]
    assert third.waiting[0] is second.waiting[0]  # decided on top: b was not worded again


@settings(max_examples=150, deadline=None)
@given(
    simple_nodes,
    st.lists(simple_specs, min_size=1, max_size=12),
    st.lists(st.lists(simple_specs, min_size=1, max_size=3), min_size=1, max_size=6),
)
def test_submissions_to_a_full_cluster_are_planned_as_from_scratch(
    nodes: list[NodeOffer], first: list[types_pb2.JobSpec], later: list[list[types_pb2.JobSpec]]
) -> None:
    """Fill the cluster until a plan places nothing, then submit and plan in turn:
    each plan is made on top of the last one, and equals a plan from scratch."""
    batches = [first, *later]
    check_history(
        nodes,
        [
            *[("plan", None)] * 3,
            *(step for batch in batches for step in (("submit", batch), ("plan", None))),
        ],
    )


def backing_off(planner: QueuePlanner) -> Log:
    """A job that failed at 10 s on n1's one GPU; its retry is due at 12 s."""
    log = Log(ControlState(retry_backoff_base_us=2 * SECOND))
    log.apply(SubmitJob("a", spec(gpus=1, retries=1), "u", "", 0))
    first = finish(planner.plan(log.state, [offer("n1", 1)], SECOND, new_run_id=lambda: "r1"))
    (assigned,) = first.assignments
    assert log.apply(assigned).ok
    log.apply(ReportRun("a", "r1", "n1", states.FAILED, 1, "", 10 * SECOND))
    return log


def test_a_job_whose_backoff_ended_is_planned_again() -> None:
    planner = QueuePlanner()
    log = backing_off(planner)
    nodes = [offer("n1", 1)]
    early = finish(planner.plan(log.state, nodes, 11 * SECOND, new_run_id=lambda: "r2"))
    assert early.assignments == early.waiting == ()
    due = finish(planner.plan(log.state, nodes, 13 * SECOND, new_run_id=lambda: "r2"))
    assert [command.job_id for command in due.assignments] == ["a"]


def test_a_clock_set_back_makes_a_plan_from_scratch() -> None:
    planner = QueuePlanner()
    log = backing_off(planner)
    full = [offer("n1", 0)]
    waiting = finish(planner.plan(log.state, full, 13 * SECOND, new_run_id=lambda: ""))
    assert [entry.job_id for entry in waiting.waiting] == ["a"]
    earlier = finish(planner.plan(log.state, full, 11 * SECOND, new_run_id=lambda: ""))
    assert earlier.waiting == ()  # not due at 11 s


def test_a_run_that_ended_or_a_changed_offer_makes_a_plan_from_scratch() -> None:
    log = Log()
    planner = QueuePlanner()
    nodes = [offer("n1", 1)]
    log.apply(SubmitJob("a", spec(gpus=1), "u", "", 0))
    log.apply(SubmitJob("b", spec(gpus=1), "u", "", 0))
    (first,) = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: "r1")).assignments
    assert log.apply(first).ok
    full = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: "r2"))
    assert full.assignments == ()
    log.apply(ReportRun("a", "r1", "n1", states.SUCCEEDED, 0, "", 2 * SECOND))
    freed = finish(planner.plan(log.state, nodes, 2 * SECOND, new_run_id=lambda: "r2"))
    assert [command.job_id for command in freed.assignments] == ["b"]
    log.apply(freed.assignments[0])
    log.apply(SubmitJob("c", spec(gpus=1), "u", "", 0))
    assert (
        finish(planner.plan(log.state, nodes, 3 * SECOND, new_run_id=lambda: "")).assignments == ()
    )
    bigger = [offer("n1", 2)]
    grown = finish(planner.plan(log.state, bigger, 3 * SECOND, new_run_id=lambda: "r3"))
    assert [command.job_id for command in grown.assignments] == ["c"]


def test_submissions_that_need_their_own_pass_make_a_plan_from_scratch() -> None:
    """A multi-node job (its rendezvous port is chosen with the plan); a runtime
    some open node lacks splits the plan into passes: neither is decided on top of
    the last plan."""
    log = Log()
    planner = QueuePlanner()
    nodes = [offer("n1", 0), offer("n2", 0, runtimes=frozenset({"process"}))]
    log.apply(SubmitJob("a", spec(gpus=1), "u", "", 0))
    finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: ""))
    log.apply(SubmitJob("gang", spec(gpus=1, nodes=2), "u", "", 0))
    log.apply(SubmitJob("boxed", spec(gpus=1, image="pytorch:2"), "u", "", 0))
    plan = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: ""))
    expected = finish(plan_in_slices(log.state, nodes, SECOND, new_run_id=lambda: ""))
    assert plan == expected


def test_a_waiting_gang_does_not_stop_new_jobs_being_decided_on_top(
    full_plans: list[int],
) -> None:
    """A gang that cannot be placed waits in the builder like any job: a new job
    queued after it is decided on top of the last plan; one that goes ahead of it
    makes a plan from scratch. Either way the positions are a fresh plan's."""
    log = Log()
    nodes = [offer("n1", 0)]
    planner = QueuePlanner()
    log.apply(SubmitJob("a", spec(gpus=1), "u", "", 0))
    log.apply(SubmitJob("gang", spec(gpus=1, nodes=2, priority=-1), "u", "", 0))
    finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: ""))
    log.apply(SubmitJob("late", spec(gpus=1, priority=-1), "u", "", 0))  # after the gang
    plan = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: ""))
    assert full_plans == [2]
    assert plan == finish(plan_in_slices(log.state, nodes, SECOND, new_run_id=lambda: ""))
    log.apply(SubmitJob("b", spec(gpus=1), "u", "", 0))  # goes ahead of the gang
    plan = finish(planner.plan(log.state, nodes, SECOND, new_run_id=lambda: ""))
    assert full_plans == [2, 4]
    assert plan == finish(plan_in_slices(log.state, nodes, SECOND, new_run_id=lambda: ""))
    assert [(entry.job_id, entry.position) for entry in plan.waiting] == [
        ("a", 1), ("b", 2), ("gang", 3), ("late", 4),
    ]  # fmt: skip
