"""The leader's placement step: offers minus what the state holds, then the scheduler."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur import scheduler
from murmur.node.control.leader.placement import (
    GANG_PORTS,
    ClusterPlan,
    GpuOffer,
    NodeOffer,
    PlanSteps,
    plan_assignments,
    plan_cluster,
    plan_in_slices,
    runtime_of,
    waiting_reasons,
)
from murmur.node.control.queue import AssignJob, CancelJob, ControlState, ReportRun, SubmitJob
from murmur.node.jobspec import states
from murmur.scheduler.slices import finish
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, end_run, spec

BOTH = frozenset({"process", "docker"})
GIB = 1 << 30


def offer(
    name: str, gpus: int = 4, *, model: str = "A100-80GB", cpus: float = 32,
    memory: int = 256 * GIB, runtimes: frozenset[str] = BOTH, schedulable: bool = True,
    datasets: frozenset[str] = frozenset(),
) -> NodeOffer:  # fmt: skip
    return NodeOffer(
        name=name,
        gpus=tuple(GpuOffer(index, model, 80 * GIB) for index in range(gpus)),
        cpus=cpus,
        memory_bytes=memory,
        runtimes=runtimes,
        datasets=datasets,
        schedulable=schedulable,
        unschedulable_reason="" if schedulable else "draining",
    )


def run_ids() -> itertools.count[int]:
    return itertools.count(1)


def planner(log: Log, offers: list[NodeOffer], now: int = 100 * SECOND) -> list[AssignJob]:
    counter = run_ids()
    return plan_assignments(log.state, offers, now, new_run_id=lambda: f"run-{next(counter)}")


def test_active_assignments_hold_their_gpus_cpus_and_memory() -> None:
    log = Log()
    log.apply(SubmitJob("held", spec(gpus=1, cpus=8, memory_bytes=64 * GIB), "u", "", 0))
    assert log.apply(AssignJob("held", "n1", "r0", 1, (0,), SECOND)).ok
    log.apply(SubmitJob("two", spec(gpus=2), "u", "", 0))
    log.apply(SubmitJob("one", spec(gpus=1), "u", "", 0))
    log.apply(SubmitJob("cpu", spec(cpus=25), "u", "", 0))
    plan = plan_cluster(
        log.state,
        [offer("n1", 2)],
        10 * SECOND,
        new_run_id=lambda: "r",
        policy=scheduler.FIFO_FIRST_FIT_POLICY,
    )
    assert [(a.job_id, a.gpu_indices, a.attempt, a.node) for a in plan.assignments] == [
        ("one", (1,), 1, "n1"),
    ]
    reasons = waiting_reasons(plan)
    assert reasons["two"][0].startswith("waiting:")
    assert "CPU" in reasons["cpu"][0] or "cpu" in reasons["cpu"][0]
    assert [position for _, position in reasons.values()] == [1, 2]


def test_assignments_get_fresh_run_ids_in_queue_order_and_apply_cleanly() -> None:
    log = Log()
    for name, priority in (("low", 0), ("high", 9), ("mid", 5)):
        log.apply(SubmitJob(name, spec(gpus=1, priority=priority), "u", "", 0))
    commands = planner(log, [offer("n1", 4)])
    assert [(c.job_id, c.run_id) for c in commands] == [
        ("high", "run-1"), ("mid", "run-2"), ("low", "run-3"),
    ]  # fmt: skip
    used = [index for command in commands for index in command.gpu_indices]
    assert len(set(used)) == 3
    for command in commands:
        assert log.apply(command).ok
    assert planner(log, [offer("n1", 4)]) == []  # nothing pending any more


def test_backed_off_jobs_are_not_placed() -> None:
    log = Log(ControlState(retry_backoff_base_us=10 * SECOND))
    log.apply(SubmitJob("retry", spec(retries=1), "u", "", 0))
    log.apply(AssignJob("retry", "n1", "r1", 1, (), 0))
    log.apply(ReportRun("retry", "r1", "n1", states.FAILED, 1, "", SECOND))
    plan = plan_cluster(log.state, [offer("n1"), offer("n2")], 5 * SECOND, new_run_id=str)
    assert plan.assignments == ()
    later = plan_cluster(log.state, [offer("n1"), offer("n2")], 11 * SECOND, new_run_id=lambda: "x")
    assert [(c.job_id, c.attempt) for c in later.assignments] == [("retry", 2)]


def test_a_gang_is_placed_whole_with_a_rendezvous_port_per_master_node() -> None:
    """Every rank on a node of its own in one command; a second gang mastered on the
    same node gets the next port, and a gang too wide for the cluster waits."""
    log = Log()
    log.apply(SubmitJob("g1", spec(gpus=4, nodes=2), "u", "", 0))
    log.apply(SubmitJob("wide", spec(gpus=1, nodes=4), "u", "", 0))
    nodes = [offer("n1", 8), offer("n2", 8), offer("n3", 0)]
    plan = plan_cluster(log.state, nodes, SECOND, new_run_id=lambda: "r1")
    (command,) = plan.assignments
    assert command.job_id == "g1"
    assert command.master_port == GANG_PORTS[0]
    assert sorted(p.node for p in command.placements) == ["n1", "n2"]
    assert all(len(p.gpu_indices) == 4 for p in command.placements)
    assert "4 nodes" in waiting_reasons(plan)["wide"][0]
    assert log.apply(command).ok
    log.apply(SubmitJob("g2", spec(gpus=4, nodes=2), "u", "", 0))
    (second,) = plan_cluster(log.state, nodes, SECOND, new_run_id=lambda: "r2").assignments
    assert second.node == command.node  # the same master node: the next port
    assert second.master_port == GANG_PORTS[1]


def test_a_job_goes_only_to_nodes_offering_its_runtime() -> None:
    log = Log()
    log.apply(SubmitJob("boxed", spec(gpus=1, image="pytorch:2"), "u", "", 0))
    log.apply(SubmitJob("plain", spec(gpus=1), "u", "", 0))
    process_only = offer("p", 1, runtimes=frozenset({"process"}))
    with_docker = offer("d", 1, runtimes=BOTH)
    commands = planner(log, [process_only, with_docker])
    assert {(c.job_id, c.node) for c in commands} == {("boxed", "d"), ("plain", "p")}
    # With no node offering docker, the reason says so.
    alone = Log()
    alone.apply(SubmitJob("boxed", spec(image="pytorch:2"), "u", "", 0))
    plan = plan_cluster(alone.state, [process_only], SECOND, new_run_id=str)
    (reason, _), *_ = waiting_reasons(plan).values()
    assert "missing the docker runtime" in reason


def test_unschedulable_nodes_take_nothing() -> None:
    log = Log()
    log.apply(SubmitJob("a", spec(gpus=1), "u", "", 0))
    plan = plan_cluster(log.state, [offer("n1", schedulable=False)], SECOND, new_run_id=str)
    assert plan.assignments == ()
    assert "draining" in waiting_reasons(plan)["a"][0]


def test_runtime_of_an_unset_runtime_follows_validation() -> None:
    assert runtime_of(types_pb2.JobSpec(image="x")) == "docker"
    assert runtime_of(types_pb2.JobSpec()) == "process"


# ---------------------------------------------------------------- properties

_MODELS = ("A100-80GB", "H100")


@st.composite
def offers(draw: st.DrawFn) -> list[NodeOffer]:
    count = draw(st.integers(1, 4))
    found = []
    for number in range(count):
        gpus = draw(st.integers(0, 6))
        found.append(
            NodeOffer(
                name=f"n{number}",
                gpus=tuple(
                    GpuOffer(index, draw(st.sampled_from(_MODELS))) for index in range(gpus)
                ),
                cpus=draw(st.sampled_from((1.0, 4.0, 16.0))),
                memory_bytes=draw(st.sampled_from((GIB, 8 * GIB, 64 * GIB))),
                runtimes=draw(st.sampled_from((BOTH, frozenset({"process"})))),
                schedulable=draw(st.booleans()) or number == 0,
                unschedulable_reason="draining",
            )
        )
    return found


job_specs = st.builds(
    spec,
    gpus=st.integers(0, 3),
    share=st.booleans(),
    model=st.sampled_from(("", "a100", "H100")),
    cpus=st.sampled_from((0.0, 0.5, 1.0, 3.0)),
    memory_bytes=st.sampled_from((0, GIB, 4 * GIB)),
    priority=st.integers(0, 2),
    queue=st.sampled_from(("default", "big")),
    nodes=st.sampled_from((1, 1, 1, 2)),
    image=st.sampled_from(("", "", "pytorch:2")),
)

rounds = st.lists(
    st.tuples(st.lists(job_specs, max_size=6), st.lists(st.integers(0, 20), max_size=4)),
    min_size=1,
    max_size=4,
)


def _check_holdings(
    state: ControlState,
    nodes: list[NodeOffer],
    default: scheduler.DefaultRequest = scheduler.NO_DEFAULT_REQUEST,
) -> None:
    """No GPU held twice (unless every holder shares), nothing over-committed (a job
    that names no CPUs or memory holds ``default``'s)."""
    for node in nodes:
        gpus = {gpu.index: gpu for gpu in node.gpus}
        holders: dict[int, list[bool]] = {}
        cpus = 0.0
        memory = 0
        for job in state.active_on(node.name):
            rank = job.rank_on(node.name)
            assert rank is not None
            # A gang is placed whole: every rank, each on a node of its own.
            assert len(job.runs) == max(1, job.spec.nodes)
            assert len({other.node for other in job.runs}) == len(job.runs)
            assert runtime_of(job.spec) in node.runtimes
            assert len(rank.gpu_indices) == job.spec.gpus.count
            for index in rank.gpu_indices:
                assert index in gpus, f"{node.name} has no GPU {index}"
                assert job.spec.gpus.model.lower() in gpus[index].model.lower()
                holders.setdefault(index, []).append(job.shares_gpus)
            cpus += job.spec.cpus or default.cpus
            memory += job.spec.memory_bytes or default.memory_bytes
        for shares in holders.values():
            assert len(shares) == 1 or all(shares)
        assert cpus <= node.cpus + 1e-6
        assert memory <= node.memory_bytes


@settings(max_examples=120, deadline=None)
@given(
    offers(),
    rounds,
    st.sampled_from((scheduler.NO_DEFAULT_REQUEST, scheduler.DefaultRequest(1.0, 2 * GIB))),
)
def test_plans_never_double_book_or_over_commit(
    nodes: list[NodeOffer],
    plan_rounds: list[tuple[list[types_pb2.JobSpec], list[int]]],
    default: scheduler.DefaultRequest,
) -> None:
    policy = scheduler.Policy(default_request=default)
    log = Log()
    counter = run_ids()
    submitted = 0
    for step, (specs, endings) in enumerate(plan_rounds):
        now = (step + 1) * 10 * SECOND
        for job_spec in specs:
            log.apply(SubmitJob(f"j{submitted}", job_spec, "u", "", now))
            submitted += 1
        plan = plan_cluster(
            log.state, nodes, now, policy=policy, new_run_id=lambda: f"r{next(counter)}"
        )
        due = {job.id for job in log.state.pending_due(now)}
        planned = [command.job_id for command in plan.assignments]
        assert len(planned) == len(set(planned))
        assert set(planned) | set(waiting_reasons(plan)) == due
        assert not set(planned) & set(waiting_reasons(plan))
        for command in plan.assignments:
            result = log.apply(command)
            assert result.ok, result.message  # a fresh plan never races itself
        _check_holdings(log.state, nodes, default)
        active = [job for node in nodes for job in log.state.active_on(node.name)]
        for pick in endings:
            if active:
                job = active[pick % len(active)]
                end_run(log, job, states.SUCCEEDED, 0, now + SECOND)
                active.remove(job)
        _check_holdings(log.state, nodes, default)


@settings(max_examples=60, deadline=None)
@given(offers(), st.lists(job_specs, min_size=1, max_size=10))
def test_two_plans_from_one_state_never_share_a_gpu(
    nodes: list[NodeOffer], specs: list[types_pb2.JobSpec]
) -> None:
    """A leader that plans again before its first assignments applied: the state refuses
    what the second plan gives twice (GPUs; CPUs and memory are the leader's to pace)."""
    log = Log()
    for number, job_spec in enumerate(specs):
        log.apply(SubmitJob(f"j{number}", job_spec, "u", "", 0))
    counter = run_ids()
    first = plan_assignments(log.state, nodes, SECOND, new_run_id=lambda: f"a{next(counter)}")
    second = plan_assignments(log.state, nodes, SECOND, new_run_id=lambda: f"b{next(counter)}")
    for command in [*first, *second]:
        log.apply(command)
    for node in nodes:
        holders: dict[int, list[bool]] = {}
        for job in log.state.active_on(node.name):
            rank = job.rank_on(node.name)
            assert rank is not None
            for index in rank.gpu_indices:
                holders.setdefault(index, []).append(job.shares_gpus)
        for shares in holders.values():
            assert len(shares) == 1 or all(shares)


def drive(steps: PlanSteps, between: Callable[[], None]) -> ClusterPlan:
    """Runs ``plan_in_slices`` to its plan, calling ``between`` at every yield."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            plan: ClusterPlan = done.value
            return plan
        between()


@settings(max_examples=80, deadline=None)
@given(offers(), st.lists(job_specs, min_size=1, max_size=12), st.integers(1, 4))
def test_a_plan_in_slices_is_the_whole_plan(
    nodes: list[NodeOffer], specs: list[types_pb2.JobSpec], slice_size: int
) -> None:
    """Slices of any size, over one pass or one per runtime, give ``plan_cluster``'s plan."""
    log = Log()
    for number, job_spec in enumerate(specs):
        log.apply(SubmitJob(f"j{number}", job_spec, "u", "", 0))
    whole, sliced = run_ids(), run_ids()
    expected = plan_cluster(log.state, nodes, SECOND, new_run_id=lambda: f"r{next(whole)}")
    steps = plan_in_slices(
        log.state, nodes, SECOND, new_run_id=lambda: f"r{next(sliced)}", slice_size=slice_size
    )
    assert finish(steps) == expected


def test_a_plan_in_slices_is_as_of_the_state_it_first_read() -> None:
    """The leader applies entries between slices: what they change is the next plan's."""
    log = Log()
    for number in range(12):
        log.apply(SubmitJob(f"j{number:02d}", spec(gpus=1), "u", "", 0))
    whole, sliced = run_ids(), run_ids()
    expected = plan_cluster(
        log.state, [offer("n1", 4)], SECOND, new_run_id=lambda: f"r{next(whole)}"
    )
    changes = iter(
        [
            lambda: log.apply(SubmitJob("urgent", spec(gpus=1, priority=9), "u", "", 0)),
            lambda: log.apply(CancelJob("j00", "u", False, "not needed", 0)),
        ]
    )
    steps = plan_in_slices(
        log.state, [offer("n1", 4)], SECOND, new_run_id=lambda: f"r{next(sliced)}", slice_size=1
    )
    plan = drive(steps, lambda: next(changes, lambda: None)())
    assert plan == expected
    assert [command.job_id for command in plan.assignments] == ["j00", "j01", "j02", "j03"]
    applied = [log.apply(command).ok for command in plan.assignments]
    assert applied == [False, True, True, True]  # j00 was cancelled meanwhile: refused
    assert [command.job_id for command in planner(log, [offer("n1", 4)])] == ["urgent"]


COUNTED = scheduler.Policy(default_request=scheduler.DefaultRequest(cpus=1, memory_bytes=2 * GIB))


def test_cpu_only_jobs_that_name_nothing_spread_by_the_default_request() -> None:
    """Twelve jobs naming no CPUs or memory, three equal 4-CPU nodes: four each, and
    runs already active count the default too (a node's room is not given twice)."""
    log = Log()
    for n in range(12):
        log.apply(SubmitJob(f"j{n:02}", spec(cpus=0, memory_bytes=0), "u", "", 0))
    nodes = [offer(f"n{i}", 0, cpus=4, memory=16 * GIB) for i in (1, 2, 3)]
    counter = run_ids()
    plan = plan_cluster(
        log.state, nodes, SECOND, policy=COUNTED, new_run_id=lambda: f"r{next(counter)}"
    )
    by_node = sorted(command.node for command in plan.assignments)
    assert by_node == ["n1"] * 4 + ["n2"] * 4 + ["n3"] * 4
    # Half of them assigned (as the log applies them): the next plan sees their room
    # taken, and places only the six that still fit.
    for command in plan.assignments[::2]:
        assert log.apply(command).ok
    again = plan_cluster(
        log.state, nodes, 2 * SECOND, policy=COUNTED, new_run_id=lambda: f"r{next(counter)}"
    )
    assert len(again.assignments) == 6
    held = [job.assignment.node for job in log.state.jobs() if job.assignment is not None]
    placed = held + [command.node for command in again.assignments]
    assert sorted(placed) == ["n1"] * 4 + ["n2"] * 4 + ["n3"] * 4
    # Without a default request they all land on one node.
    plain = plan_cluster(log.state, nodes, 2 * SECOND, new_run_id=lambda: "x")
    assert {command.node for command in plain.assignments} == {"n1"}


def test_two_gangs_that_cannot_both_fit_never_hold_each_others_nodes() -> None:
    """No deadlock: the first in queue order gets every node it needs, the second
    holds nothing and waits, and runs once the first has ended."""
    log = Log()
    log.apply(SubmitJob("g1", spec(gpus=4, nodes=2), "u", "", 0))
    log.apply(SubmitJob("g2", spec(gpus=4, nodes=2), "u", "", 0))
    nodes = [offer("n1", 4), offer("n2", 4), offer("n3", 4)]
    plan = plan_cluster(log.state, nodes, SECOND, new_run_id=lambda: "r1")
    (first,) = plan.assignments
    assert first.job_id == "g1"
    assert "2 nodes asked for a gang, 1 has room" in waiting_reasons(plan)["g2"][0]
    assert log.apply(first).ok
    assert [job.id for node in ("n1", "n2", "n3") for job in log.state.active_on(node)] == [
        "g1", "g1",
    ]  # fmt: skip
    for rank in first.placements:
        assert log.apply(ReportRun("g1", "r1", rank.node, states.SUCCEEDED, 0, "", 2 * SECOND)).ok
    (second,) = plan_cluster(log.state, nodes, 3 * SECOND, new_run_id=lambda: "r2").assignments
    assert second.job_id == "g2"
    assert len(second.placements) == 2


def test_a_services_replicas_spread_and_a_crashed_one_returns_to_its_node() -> None:
    from murmur.node.control.queue.commands import CreateService

    log = Log(ControlState(retry_backoff_base_us=SECOND))
    template = spec(gpus=1)
    service = types_pb2.ServiceSpec(name="llm", template=template, replicas=2, model="m")
    assert log.apply(CreateService(service, "alice", 0)).ok
    offers = [offer("a"), offer("b"), offer("c", gpus=2)]
    placed = planner(log, offers)
    # Best fit alone would put both on c (fewest GPUs left); spread puts them apart.
    assert len({assign.node for assign in placed}) == 2
    for assign in placed:
        assert log.apply(assign).ok
    crashed = placed[0]
    assert log.apply(
        ReportRun(crashed.job_id, crashed.run_id, crashed.node, states.FAILED, 1, "", SECOND)
    ).ok
    # A node that fits better has joined meanwhile; the replica still goes back.
    (again,) = planner(log, [*offers, offer("d", gpus=1)], now=100 * SECOND)
    assert (again.job_id, again.node) == (crashed.job_id, crashed.node)
