"""Properties of arrays and dependencies over random event sequences: an array never
runs more than its %P at once, whatever happens to its tasks; a job never starts
before its dependencies are met, and once every job that may run has ended, no job
is left waiting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ClusterJob,
    ControlState,
    NodeLost,
    ReportRun,
    SubmitJob,
)
from murmur.node.control.queue.records import ACTIVE_STATES
from murmur.node.jobspec import states
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

CONDITIONS: tuple[int, ...] = (
    types_pb2.DEPENDENCY_CONDITION_OK,
    types_pb2.DEPENDENCY_CONDITION_ANY,
    types_pb2.DEPENDENCY_CONDITION_FAILED,
)
ENDS = (states.SUCCEEDED, states.FAILED, states.CANCELLED, states.LOST)


def _active(state: ControlState, array_id: str) -> int:
    return sum(1 for job in state.jobs() if job.id.startswith(f"{array_id}[") and job.is_active)


def _run_of(job: ClusterJob) -> tuple[str, str]:
    assert job.assignment is not None
    return job.assignment.run_id, job.assignment.node


@settings(max_examples=150, deadline=None)
@given(
    tasks=st.integers(1, 12),
    limit=st.integers(1, 4),
    retries=st.integers(0, 1),
    events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), min_size=5, max_size=60),
)
def test_an_array_never_runs_more_tasks_than_its_limit(
    tasks: int, limit: int, retries: int, events: list[tuple[int, int]]
) -> None:
    log = Log()
    made = spec(cpus=0.5)
    made.array.indices = f"0-{tasks - 1}"
    made.array.max_running = limit
    made.retries = retries
    assert log.apply(SubmitJob("arr", made, "alice", "", 0)).ok
    runs = 0
    for step, (kind, pick) in enumerate(events, 1):
        at = step * 10 * SECOND  # past any retry backoff of the step before
        state = log.state
        if kind <= 1:  # a placement pass: every placeable task is assigned together
            for job in state.placeable(at):
                runs += 1
                node = f"n{runs % 3}"
                log.apply(AssignJob(job.id, node, f"r{runs}", job.attempts + 1, (), at))
        else:
            active = [job for job in state.jobs() if job.is_active]
            live = [job for job in state.jobs() if not job.is_terminal]
            if kind == 2 and active:  # a run starts
                job = active[pick % len(active)]
                run_id, node = _run_of(job)
                log.apply(ReportRun(job.id, run_id, node, states.RUNNING, None, "", at))
            elif kind == 3 and active:  # a run ends, however
                job = active[pick % len(active)]
                run_id, node = _run_of(job)
                end = ENDS[pick % len(ENDS)]
                log.apply(ReportRun(job.id, run_id, node, end, pick % 3, "", at))
            elif kind == 4 and live:  # a task, or the whole array, is cancelled
                target = "arr" if pick % 5 == 0 else live[pick % len(live)].id
                log.apply(CancelJob(target, "alice", False, "", at))
            elif kind == 5:  # a node is lost: its runs requeue
                log.apply(NodeLost(f"n{pick % 3}", "gone", at))
        assert _active(log.state, "arr") <= limit
        record = log.state.array("arr")
        assert record is not None
        recount: dict[str, int] = {}
        for job in log.state.jobs():
            recount[job.state] = recount.get(job.state, 0) + 1
        assert record.counts == recount
        assert record.active == sum(recount.get(s, 0) for s in ACTIVE_STATES)
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert [job.id for job in restored.placeable(10**12)] == [
        job.id for job in log.state.placeable(10**12)
    ]


@st.composite
def _graphs(draw: st.DrawFn) -> list[tuple[bool, list[tuple[int, int]]]]:
    """Jobs 0..n-1, each an array or not, each waiting on some earlier ones."""
    count = draw(st.integers(2, 8))
    jobs = []
    for position in range(count):
        is_array = draw(st.booleans())
        targets = (
            draw(st.lists(st.integers(0, position - 1), max_size=2, unique=True))
            if position
            else []
        )
        jobs.append((is_array, [(t, draw(st.sampled_from(CONDITIONS))) for t in targets]))
    return jobs


def _met(condition: int, target_states: list[str]) -> bool:
    """The rule table of node/control/queue/dependencies.py, over every task's end."""
    succeeded = all(state == states.SUCCEEDED for state in target_states)
    if condition == types_pb2.DEPENDENCY_CONDITION_OK:
        return succeeded
    if condition == types_pb2.DEPENDENCY_CONDITION_FAILED:
        return not succeeded
    return True


@settings(max_examples=150, deadline=None)
@given(graph=_graphs(), outcomes=st.lists(st.sampled_from(ENDS[:3]), min_size=40, max_size=40))
def test_jobs_start_only_once_their_dependencies_are_met_and_none_is_left_waiting(
    graph: list[tuple[bool, list[tuple[int, int]]]], outcomes: list[str]
) -> None:
    log = Log()
    members: dict[str, list[str]] = {}
    for position, (is_array, targets) in enumerate(graph):
        made = spec(cpus=0.5)
        if is_array:
            made.array.indices = "0-1"
        for target, condition in targets:
            made.after.add(job_id=f"j{target}", condition=condition)
        result = log.apply(SubmitJob(f"j{position}", made, "alice", "", 0))
        assert result.ok, result.message
        members[f"j{position}"] = [job.id for job in result.changed]
    ended_as: dict[str, str] = {}
    started: list[str] = []
    runs = 0
    while True:
        due = log.state.placeable(10**12)
        if not due:
            break
        for job in due:
            owner = job.id.split("[")[0]
            position = int(owner[1:])
            for target, condition in graph[position][1]:
                target_states = [ended_as[task] for task in members[f"j{target}"]]
                assert _met(condition, target_states), (job.id, target, condition)
            runs += 1
            at = runs * SECOND
            assert log.apply(AssignJob(job.id, "n1", f"r{runs}", 1, (), at)).ok
            end = outcomes[runs % len(outcomes)]
            log.apply(ReportRun(job.id, f"r{runs}", "n1", states.RUNNING, None, "", at))
            log.apply(ReportRun(job.id, f"r{runs}", "n1", end, 1, "", at))
            ended = log.state.job(job.id)
            assert ended is not None
            ended_as[job.id] = ended.state
            started.append(job.id)
        for job in log.state.jobs():
            if job.is_terminal:
                ended_as[job.id] = job.state
    leftover = [job.id for job in log.state.jobs() if not job.is_terminal]
    assert leftover == []
    for job in log.state.jobs():
        if job.reason.startswith("dependency never satisfied") and job.id not in started:
            waiter = int(job.id.split("[")[0][1:])
            assert any(
                not _met(condition, [ended_as[t] for t in members[f"j{target}"]])
                for target, condition in graph[waiter][1]
            )
