"""An array as one job record: its state, reason and exit code from its tasks'; a
task's record with its index and sweep values."""

from __future__ import annotations

from murmur.node.control.queue import AssignJob, CancelJob, ReportRun, SubmitJob, job_message
from murmur.node.control.queue.array_view import array_message, with_task_view
from murmur.node.jobspec import states
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def array_log(indices: str = "0-2") -> Log:
    log = Log()
    made = spec()
    made.array.indices = indices
    made.array.max_running = 2
    assert log.apply(SubmitJob("arr", made, "alice", "", SECOND)).ok
    return log


def finish(log: Log, task: str, state: str, code: int) -> None:
    assert log.apply(AssignJob(task, "n1", f"r-{task}", 1, (), 2 * SECOND)).ok
    assert log.apply(ReportRun(task, f"r-{task}", "n1", states.RUNNING, None, "", 2 * SECOND)).ok
    assert log.apply(ReportRun(task, f"r-{task}", "n1", state, code, "", 3 * SECOND)).ok


def shown(log: Log) -> types_pb2.Job:
    record = log.state.array("arr")
    assert record is not None
    return array_message(record, log.state.job)


def test_an_array_runs_while_a_task_runs_and_counts_its_tasks() -> None:
    log = array_log()
    waiting = shown(log)
    assert waiting.state == types_pb2.JOB_STATE_PENDING
    assert waiting.reason == "3 tasks: 3 pending (at most 2 at once)"
    assert (waiting.array.array_id, waiting.array.tasks) == ("arr", 3)
    assert not waiting.array.HasField("task_index")
    assert not waiting.HasField("exit_code")
    assert log.apply(AssignJob("arr[1]", "n1", "r", 1, (), 2 * SECOND)).ok
    assert log.apply(ReportRun("arr[1]", "r", "n1", states.RUNNING, None, "", 2 * SECOND)).ok
    running = shown(log)
    assert running.state == types_pb2.JOB_STATE_RUNNING
    assert dict(running.array.tasks_by_state) == {"pending": 2, "running": 1}


def test_an_array_that_ended_says_how_and_exits_as_its_first_failing_task() -> None:
    log = array_log()
    finish(log, "arr[0]", states.SUCCEEDED, 0)
    finish(log, "arr[2]", states.FAILED, 9)
    finish(log, "arr[1]", states.FAILED, 4)
    failed = shown(log)
    assert failed.state == types_pb2.JOB_STATE_FAILED
    assert failed.exit_code == 4  # task 1 comes before task 2
    assert failed.reason.endswith("; arr[1]: exited with code 4")
    ok = array_log()
    for index in range(3):
        finish(ok, f"arr[{index}]", states.SUCCEEDED, 0)
    assert (shown(ok).state, shown(ok).exit_code) == (types_pb2.JOB_STATE_SUCCEEDED, 0)
    cancelled = array_log()
    assert cancelled.apply(CancelJob("arr", "alice", False, "", 5 * SECOND)).ok
    assert shown(cancelled).state == types_pb2.JOB_STATE_CANCELLED
    assert not shown(cancelled).HasField("exit_code")


def test_a_task_s_record_names_its_array_index_and_sweep_values() -> None:
    log = Log()
    made = spec()
    made.array.sweep.add(name="lr", values=["1e-3", "3e-4"])
    assert log.apply(SubmitJob("sw", made, "alice", "", SECOND)).ok
    task = log.state.job("sw[1]")
    assert task is not None
    message = with_task_view(job_message(task), task)
    assert (message.array.array_id, message.array.task_index, message.array.tasks) == ("sw", 1, 2)
    assert message.spec.labels["lr"] == "3e-4"
    assert "lr" not in task.spec.labels  # the shared spec is left as it was
