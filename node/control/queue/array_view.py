"""Arrays as the client API shows them: a task as a job with what it has of its array
(its index, its sweep labels), and a whole array as one ``murmur.v1.Job`` whose id
is the array's, counting its tasks by state (``job list`` folds an array into it,
``job show ID`` and ``job wait ID`` read it).

An array's own record:

- state: running while a task has a run (starting or scheduled when none runs
  yet), pending while tasks wait and none has a run; once every task ended,
  failed when one failed or was lost, else cancelled when one was, else succeeded;
- exit code, once it ended other than succeeded: the first task's, by index, that
  did not succeed and has one (what ``murmur job wait`` exits with);
- reason: the tasks by state ("100 tasks: 4 running, 90 pending, 6 succeeded"),
  and its ``%P`` when it has one; once it ended other than succeeded, the reason of
  its first task (by index) that did not succeed.
"""

from __future__ import annotations

from collections.abc import Callable

from murmur.node.control.queue.arrays import ArrayRecord
from murmur.node.control.queue.convert import history_event, timestamp_us
from murmur.node.control.queue.records import ALL_STATES, ClusterJob, JobEvent
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import split_task_id, task_count, task_labels
from murmur.node.jobspec.secrets import without_secret_values
from murmur.v1 import types_pb2


def with_task_view(message: types_pb2.Job, job: ClusterJob) -> types_pb2.Job:
    """``message`` (``job``'s) with what a task has of its array: ``array`` (its id,
    index and the array's task count) and its sweep values among its labels. A job
    that is no task is left as it is."""
    split = split_task_id(job.id) if job.spec.HasField("array") else None
    if split is None:
        return message
    array_id, index = split
    message.array.array_id = array_id
    message.array.task_index = index
    message.array.tasks = task_count(job.spec.array)
    message.spec.labels.update(task_labels(job.spec, index))
    return message


def array_state(record: ArrayRecord) -> str:
    """The array's state, as its tasks' say (see the module docstring)."""
    counts = record.counts
    for state in (states.RUNNING, states.STARTING, states.SCHEDULED, states.PENDING):
        if counts.get(state):
            return state
    if counts.get(states.FAILED) or counts.get(states.LOST):
        return states.FAILED
    if counts.get(states.CANCELLED):
        return states.CANCELLED
    return states.FAILED if record.unsuccessful else states.SUCCEEDED


def array_reason(record: ArrayRecord) -> str:
    """``100 tasks: 4 running, 90 pending, 6 succeeded (at most 4 at once)``."""
    counts = record.counts
    parts = [f"{counts[state]} {state}" for state in ALL_STATES if counts.get(state)]
    gone = len(record.task_ids) - record.held
    if gone:
        parts.append(f"{gone} forgotten")
    text = f"{len(record.task_ids)} tasks: " + ", ".join(parts)
    if record.max_running:
        text += f" (at most {record.max_running} at once)"
    return text


def array_message(record: ArrayRecord, job_of: Callable[[str], ClusterJob | None]) -> types_pb2.Job:
    """The whole array as one job record (see the module docstring)."""
    state = array_state(record)
    message = types_pb2.Job(
        id=record.id,
        spec=without_secret_values(record.spec),
        user=record.user,
        state=states.to_proto(state),
        reason=array_reason(record),
        submitted_at=timestamp_us(record.submitted_at_us),
        updated_at=timestamp_us(max(record.updated_at_us, record.submitted_at_us)),
    )
    message.array.array_id = record.id
    message.array.tasks = len(record.task_ids)
    message.array.tasks_by_state.update(record.counts)
    if state in (states.FAILED, states.CANCELLED):
        code = _first_exit_code(record, job_of)
        if code is not None:
            message.exit_code = code
        first = _first_unsuccessful(record, job_of)
        if first is not None:
            message.reason += f"; {first.id}: {first.reason}"
    elif state == states.SUCCEEDED:
        message.exit_code = 0
    submitted = f"array of {len(record.task_ids)} tasks submitted by {record.user}"
    message.history.append(
        history_event(record.id, JobEvent(record.submitted_at_us, states.PENDING, submitted))
    )
    return message


def _first_unsuccessful(
    record: ArrayRecord, job_of: Callable[[str], ClusterJob | None]
) -> ClusterJob | None:
    """The first task, by index, that ended other than succeeded: its reason says
    why the array did (a failure, a cancel, a dependency never met)."""
    for task_id in record.task_ids:
        task = job_of(task_id)
        if task is not None and task.is_terminal and task.state != states.SUCCEEDED:
            return task
    return None


def _first_exit_code(record: ArrayRecord, job_of: Callable[[str], ClusterJob | None]) -> int | None:
    """The exit code of the first task, by index, that did not succeed and has one."""
    for task_id in record.task_ids:
        task = job_of(task_id)
        if task is not None and task.state != states.SUCCEEDED and task.exit_code is not None:
            return task.exit_code
    return None
