"""Arrays, dependencies, batches and projects in the control state: one entry makes a
whole array; %P holds tasks back; a dependency holds a job until it is met and ends
it when it can no longer be; a batch is made whole or not at all."""

from __future__ import annotations

import pytest

from murmur.node.control.leader.placement import plan_cluster
from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ClusterJob,
    ControlSnapshotError,
    ControlState,
    ErrorKind,
    ForgetJobs,
    ReportRun,
    SubmitJob,
)
from murmur.node.control.queue.commands import SetLabPolicy, SubmitJobs, decode, encode
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_ARRAYS
from murmur.node.jobspec import states
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.leader.test_control_placement import offer
from tests.node.control.queue.builders import SECOND, Log, spec

OK = types_pb2.DEPENDENCY_CONDITION_OK
ANY = types_pb2.DEPENDENCY_CONDITION_ANY
FAILED = types_pb2.DEPENDENCY_CONDITION_FAILED


def array_spec(indices: str = "0-9", max_running: int = 0) -> types_pb2.JobSpec:
    made = spec()
    made.array.indices = indices
    made.array.max_running = max_running
    return made


def sweep_spec(**parameters: list[str]) -> types_pb2.JobSpec:
    made = spec()
    for name, values in parameters.items():
        made.array.sweep.add(name=name, values=values)
    return made


def after(made: types_pb2.JobSpec, *targets: tuple[str, int]) -> types_pb2.JobSpec:
    for job_id, condition in targets:
        made.after.add(job_id=job_id, condition=condition)
    return made


def submit(log: Log, job_id: str, made: types_pb2.JobSpec, *, key: str = "") -> ClusterJob:
    result = log.apply(SubmitJob(job_id, made, "alice", key, SECOND))
    assert result.ok, result.message
    assert result.job is not None
    return result.job


def start(log: Log, job_id: str, run: str, *, node: str = "n1", at: int = 2 * SECOND) -> None:
    assert log.apply(AssignJob(job_id, node, run, 1, (), at)).ok
    assert log.apply(ReportRun(job_id, run, node, states.RUNNING, None, "", at)).ok


def end(log: Log, job_id: str, run: str, state: str, code: int, at: int = 3 * SECOND) -> None:
    assert log.apply(ReportRun(job_id, run, "n1", state, code, "", at)).ok


def run_to_end(log: Log, job_id: str, state: str = states.SUCCEEDED, code: int = 0) -> None:
    start(log, job_id, f"run-{job_id}")
    end(log, job_id, f"run-{job_id}", state, code)


def placeable(state: ControlState) -> list[str]:
    return [job.id for job in state.placeable(100 * SECOND)]


# ------------------------------------------------------------------ arrays


def test_one_entry_makes_every_task_of_an_array_sharing_its_spec() -> None:
    log = Log()
    result = log.apply(SubmitJob("arr", array_spec("0-999"), "alice", "k", SECOND))
    assert result.ok
    assert result.job is not None
    assert log.index == 1  # one entry for 1,000 tasks
    assert result.job.id == "arr[0]"
    assert len(result.changed) == 1000
    tasks = log.state.jobs()
    assert [job.id for job in tasks[:3]] == ["arr[0]", "arr[1]", "arr[2]"]
    record = log.state.array("arr")
    assert record is not None
    assert all(job.spec is record.spec for job in tasks)
    assert record.counts == {states.PENDING: 1000}
    # Placement may take them as any new job: no limit, no dependency.
    assert log.state.submissions_since_change == 1000


def test_indices_name_the_tasks_and_a_sweep_indexes_its_combinations() -> None:
    log = Log()
    submit(log, "odd", array_spec("1,3,10-14:2"))
    assert [job.id for job in log.state.jobs()] == [
        "odd[1]", "odd[3]", "odd[10]", "odd[12]", "odd[14]",
    ]  # fmt: skip
    log2 = Log()
    submit(log2, "sw", sweep_spec(lr=["1e-3", "3e-4"], batch=["32", "64"]))
    assert len(log2.state) == 4
    assert log2.state.array("sw") is not None


def test_a_resubmitted_array_yields_its_first_task_and_makes_nothing() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-4"), key="k")
    again = log.apply(SubmitJob("other", array_spec("0-4"), "alice", "k", 2 * SECOND))
    assert again.ok
    assert again.job is not None
    assert (again.job.id, again.changed) == ("arr[0]", ())
    assert len(log.state) == 5
    # A plain job with the same key is the same submission too.
    plain = log.apply(SubmitJob("plain", spec(), "alice", "k", 2 * SECOND))
    assert plain.job is not None
    assert plain.job.id == "arr[0]"


def test_bad_arrays_and_taken_ids_are_refused() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-2"))
    assert log.apply(SubmitJob("arr", spec(), "alice", "", 0)).error is ErrorKind.INVALID
    assert log.apply(SubmitJob("x", array_spec("5-1"), "alice", "", 0)).error is ErrorKind.INVALID
    task_named = log.apply(SubmitJob("y[1]", array_spec("0-1"), "alice", "", 0))
    assert task_named.error is ErrorKind.INVALID
    assert len(log.state) == 3


def test_max_running_holds_back_tasks_beyond_it_lowest_index_first() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-9", max_running=3))
    assert log.state.submissions_since_change == 0  # a full plan: some are held
    assert placeable(log.state) == ["arr[0]", "arr[1]", "arr[2]"]
    held = log.state.job("arr[7]")
    assert held is not None
    assert log.state.hold_reason(held) == (
        "waiting: array arr runs at most 3 tasks at once (0 running)"
    )
    start(log, "arr[0]", "r0")
    start(log, "arr[1]", "r1")
    assert placeable(log.state) == ["arr[2]"]
    start(log, "arr[2]", "r2")
    assert placeable(log.state) == []
    end(log, "arr[1]", "r1", states.SUCCEEDED, 0)
    assert placeable(log.state) == ["arr[3]"]
    # A task that failed with retries left waits its backoff, freeing its place.
    log2 = Log()
    retried = array_spec("0-3", max_running=1)
    retried.retries = 1
    submit(log2, "r", retried)
    start(log2, "r[0]", "a")
    end(log2, "r[0]", "a", states.FAILED, 1)
    assert [job.id for job in log2.state.placeable(3 * SECOND)] == ["r[1]"]


def test_cancelling_an_array_cancels_every_task_not_ended() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-3"))
    run_to_end(log, "arr[0]")
    start(log, "arr[1]", "r1")
    refused = log.apply(CancelJob("arr", "bob", False, "", 5 * SECOND))
    assert refused.error is ErrorKind.PERMISSION_DENIED
    result = log.apply(CancelJob("arr", "alice", False, "enough", 5 * SECOND))
    assert result.ok
    assert result.job is None
    assert sorted(job.id for job in result.changed) == ["arr[1]", "arr[2]", "arr[3]"]
    by_id = {job.id: job for job in log.state.jobs()}
    assert by_id["arr[0]"].state == states.SUCCEEDED
    assert by_id["arr[1]"].cancel_requested  # its run is being stopped
    assert by_id["arr[2]"].state == states.CANCELLED
    end(log, "arr[1]", "r1", states.CANCELLED, 143, at=6 * SECOND)
    again = log.apply(CancelJob("arr", "alice", False, "", 7 * SECOND))
    assert again.error is ErrorKind.FAILED_PRECONDITION
    # One task alone may be cancelled too.
    submit(log, "two", array_spec("0-1"))
    assert log.apply(CancelJob("two[1]", "alice", False, "", 8 * SECOND)).ok
    assert log.state.job("two[0]").state == states.PENDING  # type: ignore[union-attr]


def test_a_snapshot_keeps_arrays_with_one_spec_each() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-99", max_running=4), key="k")
    run_to_end(log, "arr[0]", states.FAILED, 3)
    data = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(data)
    assert message.format == SNAPSHOT_FORMAT_WITH_ARRAYS
    assert len(message.arrays) == 1
    assert not any(job.HasField("spec") for job in message.jobs)
    restored = ControlState.from_snapshot(data)
    record = restored.array("arr")
    assert record is not None
    assert all(job.spec is record.spec for job in restored.jobs())
    assert record.counts == {states.FAILED: 1, states.PENDING: 99}
    assert record.unsuccessful == 1
    assert restored.snapshot() == data
    # The key still finds the array.
    again = restored.apply(1000, 1000, encode(SubmitJob("x", array_spec(), "alice", "k", 0)))
    assert again.job is not None
    assert again.job.id == "arr[0]"


def test_a_snapshot_with_a_task_but_no_array_is_refused() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-1"))
    message = control_pb2.ControlSnapshot.FromString(log.state.snapshot())
    del message.arrays[:]
    with pytest.raises(ControlSnapshotError, match="no spec"):
        ControlState.from_snapshot(message.SerializeToString())


def test_an_array_goes_with_its_last_forgotten_task() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-1"), key="k")
    run_to_end(log, "arr[0]")
    run_to_end(log, "arr[1]")
    log.apply(ForgetJobs(("arr[0]",), 0, 10 * SECOND))
    record = log.state.array("arr")
    assert record is not None
    assert record.finished
    log.apply(ForgetJobs(("arr[1]",), 0, 10 * SECOND))
    assert log.state.array("arr") is None
    assert not control_pb2.ControlSnapshot.FromString(log.state.snapshot()).arrays
    fresh = log.apply(SubmitJob("new", spec(), "alice", "k", 11 * SECOND))
    assert fresh.job is not None
    assert fresh.job.id == "new"


# ------------------------------------------------------------------ dependencies


def test_a_dependency_must_name_a_job_the_queue_holds_and_never_itself() -> None:
    log = Log()
    unknown = log.apply(SubmitJob("b", after(spec(), ("nope", OK)), "alice", "", 0))
    assert unknown.error is ErrorKind.NOT_FOUND
    assert "no job nope to wait for" in unknown.message
    itself = log.apply(SubmitJob("b", after(spec(), ("b", OK)), "alice", "", 0))
    assert itself.error is ErrorKind.INVALID
    own_task = log.apply(SubmitJob("c", after(array_spec(), ("c[1]", OK)), "alice", "", 0))
    assert own_task.error is ErrorKind.INVALID
    assert len(log.state) == 0


def test_after_ok_holds_a_job_until_its_dependency_succeeds() -> None:
    log = Log()
    submit(log, "a", spec())
    b = submit(log, "b", after(spec(), ("a", OK)))
    assert placeable(log.state) == ["a"]
    assert log.state.hold_reason(b) == "waiting for job a to succeed (pending)"
    assert log.state.submissions_since_change == 0  # b is held: a full plan
    start(log, "a", "ra")
    assert log.state.hold_reason(log.state.job("b")) == "waiting for job a to succeed (running)"  # type: ignore[arg-type]
    end(log, "a", "ra", states.SUCCEEDED, 0)
    b = log.state.job("b")  # type: ignore[assignment]
    assert b.state == states.PENDING
    assert b.history[-1].reason == "dependencies met: job a succeeded"
    assert placeable(log.state) == ["b"]


def test_a_dependency_that_can_no_longer_be_met_ends_the_job_and_those_after_it() -> None:
    log = Log()
    submit(log, "a", spec())
    submit(log, "b", after(spec(), ("a", OK)))
    submit(log, "c", after(spec(), ("b", OK)))
    submit(log, "d", after(spec(), ("b", ANY)))
    start(log, "a", "ra")
    result = log.apply(ReportRun("a", "ra", "n1", states.FAILED, 7, "", 5 * SECOND))
    assert {job.id for job in result.changed} == {"a", "b", "c", "d"}
    b, c, d = (log.state.job(job_id) for job_id in "bcd")
    assert b is not None
    assert c is not None
    assert d is not None
    assert (b.state, b.reason) == (states.CANCELLED, "dependency never satisfied: job a failed")
    assert b.updated_at_us == 5 * SECOND
    assert (c.state, c.reason) == (
        states.CANCELLED,
        "dependency never satisfied: job b was cancelled",
    )
    assert d.state == states.PENDING  # after b:any: it ended, however
    assert placeable(log.state) == ["d"]


def test_after_failed_runs_only_when_its_dependency_did_not_succeed() -> None:
    log = Log()
    submit(log, "a", spec())
    submit(log, "b", spec())
    submit(log, "on-a", after(spec(), ("a", FAILED)))
    submit(log, "on-b", after(spec(), ("b", FAILED)))
    run_to_end(log, "a", states.FAILED, 1)
    run_to_end(log, "b", states.SUCCEEDED, 0)
    assert log.state.job("on-a").state == states.PENDING  # type: ignore[union-attr]
    on_b = log.state.job("on-b")
    assert on_b is not None
    assert (on_b.state, on_b.reason) == (
        states.CANCELLED,
        "dependency never satisfied: job b succeeded",
    )


def test_a_dependency_on_an_ended_job_is_settled_at_submission() -> None:
    log = Log()
    submit(log, "a", spec())
    run_to_end(log, "a", states.FAILED, 2)
    never = submit(log, "b", after(spec(), ("a", OK)))
    assert (never.state, never.reason) == (
        states.CANCELLED,
        "dependency never satisfied: job a failed",
    )
    met = submit(log, "c", after(spec(), ("a", ANY)))
    assert met.state == states.PENDING
    assert placeable(log.state) == ["c"]


def test_an_array_counts_when_all_its_tasks_ended() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-2"))
    submit(log, "all", after(spec(), ("arr", OK)))
    submit(log, "any", after(spec(), ("arr", ANY)))
    submit(log, "one", after(spec(), ("arr[1]", OK)))
    run_to_end(log, "arr[1]")
    assert set(placeable(log.state)) == {"arr[0]", "arr[2]", "one"}
    run_to_end(log, "arr[0]")
    assert "all" not in placeable(log.state)
    run_to_end(log, "arr[2]", states.FAILED, 4)
    all_ok = log.state.job("all")
    assert all_ok is not None
    assert all_ok.state == states.CANCELLED
    assert all_ok.reason == "dependency never satisfied: array arr: 1 task(s) did not succeed"
    assert "any" in placeable(log.state)


def test_after_ok_on_an_array_ends_as_soon_as_one_task_fails() -> None:
    log = Log()
    submit(log, "arr", array_spec("0-9"))
    submit(log, "b", after(spec(), ("arr", OK)))
    run_to_end(log, "arr[4]", states.FAILED, 1)
    b = log.state.job("b")
    assert b is not None
    assert b.state == states.CANCELLED


def test_an_array_may_wait_and_its_tasks_end_together() -> None:
    log = Log()
    submit(log, "a", spec())
    submit(log, "arr", after(array_spec("0-3"), ("a", OK)))
    assert placeable(log.state) == ["a"]
    run_to_end(log, "a", states.FAILED, 1)
    tasks = [job for job in log.state.jobs() if job.id.startswith("arr")]
    assert {job.state for job in tasks} == {states.CANCELLED}
    record = log.state.array("arr")
    assert record is not None
    assert record.finished


def test_waiting_jobs_survive_a_snapshot_and_are_settled_after_it() -> None:
    log = Log()
    submit(log, "a", spec())
    submit(log, "b", after(spec(), ("a", OK)))
    restored = Log(ControlState.from_snapshot(log.state.snapshot()))
    assert placeable(restored.state) == ["a"]
    start(restored, "a", "ra")
    end(restored, "a", "ra", states.FAILED, 1)
    assert restored.state.job("b").state == states.CANCELLED  # type: ignore[union-attr]


def test_a_dependency_on_a_forgotten_job_counts_as_met() -> None:
    log = Log()
    submit(log, "a", spec())
    submit(log, "b", after(spec(), ("a", ANY)))
    run_to_end(log, "a")
    log.apply(ForgetJobs(("a",), 0, 10 * SECOND))
    assert placeable(log.state) == ["b"]


# ------------------------------------------------------------------ batches


def test_a_batch_is_made_whole_and_a_job_may_wait_for_an_earlier_one() -> None:
    log = Log()
    first = SubmitJob("x1", spec(), "bob", "k1", SECOND)
    second = SubmitJob("x2", after(array_spec("0-1"), ("x1", OK)), "bob", "k2", SECOND)
    command = SubmitJobs((first, second))
    assert decode(encode(command)) == command
    result = log.apply(command)
    assert result.ok, result.message
    assert [job.id for job in result.changed] == ["x1", "x2[0]", "x2[1]"]
    assert {job.submit_order for job in result.changed} == {1}
    assert placeable(log.state) == ["x1"]
    again = log.apply(command)
    assert (again.ok, again.changed) == (True, ())
    assert again.job is not None
    assert again.job.id == "x1"


def test_one_bad_job_refuses_the_whole_batch_naming_it() -> None:
    log = Log()
    submit(log, "old", spec(), key="used")
    bad = SubmitJobs(
        (
            SubmitJob("y1", spec(), "alice", "a", SECOND),
            SubmitJob("y2", after(spec(), ("nope", OK)), "alice", "b", SECOND),
        )
    )
    result = log.apply(bad)
    assert result.error is ErrorKind.NOT_FOUND
    assert result.message.startswith("job 2: no job nope")
    assert log.state.job("y1") is None
    reused = log.apply(
        SubmitJobs(
            (
                SubmitJob("z1", spec(), "alice", "fresh", SECOND),
                SubmitJob("z2", spec(), "alice", "used", SECOND),
            )
        )
    )
    assert reused.error is ErrorKind.FAILED_PRECONDITION
    assert reused.message == (
        "job 2: its idempotency key was used by job old, which is not of this batch"
    )
    twice = log.apply(
        SubmitJobs(
            (
                SubmitJob("w1", spec(), "alice", "same", SECOND),
                SubmitJob("w2", spec(), "alice", "same", SECOND),
            )
        )
    )
    assert twice.message == "job 2: the same idempotency key as job 1"
    forward = log.apply(
        SubmitJobs(
            (
                SubmitJob("v1", after(spec(), ("v2", OK)), "alice", "", SECOND),
                SubmitJob("v2", spec(), "alice", "", SECOND),
            )
        )
    )
    assert forward.error is ErrorKind.NOT_FOUND  # only earlier jobs: no cycle can form
    assert len(log.state) == 1


# ------------------------------------------------------------------ projects


POLICY = """
[defaults]
project = "lab"

[projects.vision]
mlflow_tracking_uri = "http://mlflow.lab:5000"

[projects.nlp]
mlflow_tracking_uri = "http://mlflow.lab:5000"
mlflow_experiment = "nlp-2026"
"""


def test_the_policy_gives_a_default_project_and_a_projects_mlflow_settings() -> None:
    log = Log()
    assert log.apply(SetLabPolicy(POLICY, "root", 0)).ok
    plain = submit(log, "plain", spec())
    assert (plain.spec.project, dict(plain.spec.env)) == ("lab", {"A": "1", "B": "2"})
    vision = spec()
    vision.project = "vision"
    made = submit(log, "v", vision)
    assert made.spec.env["MLFLOW_TRACKING_URI"] == "http://mlflow.lab:5000"
    assert made.spec.env["MLFLOW_EXPERIMENT_NAME"] == "vision"
    own = spec()
    own.project = "nlp"
    own.env["MLFLOW_EXPERIMENT_NAME"] = "mine"
    nlp = submit(log, "n", own)
    assert nlp.spec.env["MLFLOW_EXPERIMENT_NAME"] == "mine"  # the job's own wins
    arr = array_spec("0-2")
    arr.project = "vision"
    submit(log, "arr", arr)
    record = log.state.array("arr")
    assert record is not None
    assert record.spec.env["MLFLOW_EXPERIMENT_NAME"] == "vision"
    assert all(log.state.job(f"arr[{i}]").spec is record.spec for i in range(3))  # type: ignore[union-attr]


def test_usage_is_counted_by_project_and_kept_in_snapshots() -> None:
    log = Log()
    made = spec(gpus=2)
    made.project = "vision"
    submit(log, "a", made)
    assert log.apply(AssignJob("a", "n1", "r", 1, (0, 1), SECOND)).ok
    assert log.apply(ReportRun("a", "r", "n1", states.RUNNING, None, "", SECOND)).ok
    assert log.apply(ReportRun("a", "r", "n1", states.SUCCEEDED, 0, "", 11 * SECOND)).ok
    assert log.state.project_usage() == [("vision", 0, 20.0)]
    data = log.state.snapshot()
    assert control_pb2.ControlSnapshot.FromString(data).format == SNAPSHOT_FORMAT_WITH_ARRAYS
    assert ControlState.from_snapshot(data).project_usage() == [("vision", 0, 20.0)]


def test_a_snapshot_without_any_of_it_keeps_its_old_format() -> None:
    log = Log()
    submit(log, "a", spec())
    assert control_pb2.ControlSnapshot.FromString(log.state.snapshot()).format == 1


def test_the_leader_places_an_arrays_tasks_lowest_index_first_without_a_limit() -> None:
    # Their ids sort arr[0], arr[1], arr[10], arr[11], arr[2]...: the index decides.
    log = Log()
    made = array_spec("0-11")
    made.gpus.count = 1
    submit(log, "arr", made)
    plan = plan_cluster(log.state, [offer("n1", 3)], 10 * SECOND, new_run_id=lambda: "r")
    assert [a.job_id for a in plan.assignments] == ["arr[0]", "arr[1]", "arr[2]"]
