"""The arrays the control state holds: one record per array, its tasks being jobs of
the queue (node/jobspec/arrays.py says what an array is).

An array is submitted in one entry. Its tasks are made then, each a ``ClusterJob``
named ``ID[INDEX]`` that shares the array's spec object: they retry, get preempted
and are placed like any job. The record keeps what the tasks do not: the array's
id, its idempotency key, and counts of its tasks by state, kept in step with every
change of a task (``ArrayTable.note``), so the questions the leader asks on every
placement pass (how many of its tasks run? did all end? did one fail?) cost the
same with 10 tasks as with 10,000.

``unsuccessful`` counts the tasks that ended other than succeeded, ever: a task
the queue forgot (its retention) no longer counts by state, but a dependency on
the array must still know whether one failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from murmur.node.control.queue.records import ACTIVE_STATES, ClusterJob
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import split_task_id, task_id, task_indices
from murmur.v1 import control_pb2, types_pb2


@dataclass(slots=True)
class ArrayRecord:
    """One array. ``spec`` is the object every task of it shares (until a task ends
    holding secrets: its own copy then has none).

    Attributes:
        task_ids: every task's id, by index.
        counts: tasks (those the queue still holds) by state.
        unsuccessful: tasks that ended other than succeeded, forgotten ones included.
            Tasks of the array number ``len(task_ids)``: those the queue no longer
            holds had ended.
    """

    id: str
    spec: types_pb2.JobSpec
    user: str
    submit_order: int
    submitted_at_us: int
    idempotency_key: str
    task_ids: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    unsuccessful: int = 0
    updated_at_us: int = 0
    """When a task last changed (of those the queue holds, or held)."""

    @property
    def max_running(self) -> int:
        """Slurm's ``%P``: 0 for no limit."""
        return self.spec.array.max_running

    @property
    def active(self) -> int:
        """Tasks with a run (scheduled, starting, running)."""
        counts = self.counts
        return sum(counts.get(state, 0) for state in ACTIVE_STATES)

    @property
    def held(self) -> int:
        """Tasks the queue still holds."""
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        """Every task ended (a task the queue forgot had ended)."""
        counts = self.counts
        return not any(counts.get(state, 0) for state in _LIVE_STATES)

    @property
    def succeeded(self) -> bool:
        """Every task ended, and succeeded."""
        return self.finished and not self.unsuccessful

    def message(self) -> control_pb2.ControlArray:
        return control_pb2.ControlArray(
            id=self.id,
            spec=self.spec,
            user=self.user,
            submit_order=self.submit_order,
            submitted_at_us=self.submitted_at_us,
            idempotency_key=self.idempotency_key,
            unsuccessful=self.unsuccessful,
        )


_LIVE_STATES = (states.PENDING, *ACTIVE_STATES)


def new_array(
    array_id: str,
    spec: types_pb2.JobSpec,
    user: str,
    submit_order: int,
    submitted_at_us: int,
    idempotency_key: str,
) -> ArrayRecord:
    """A record for a new array (its tasks not yet counted)."""
    return ArrayRecord(
        id=array_id,
        spec=spec,
        user=user,
        submit_order=submit_order,
        submitted_at_us=submitted_at_us,
        idempotency_key=idempotency_key,
        task_ids=tuple(task_id(array_id, index) for index in task_indices(spec.array)),
    )


class ArrayTable:
    """Every array, and the idempotency keys of their submissions."""

    def __init__(self) -> None:
        self._arrays: dict[str, ArrayRecord] = {}
        self._by_key: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._arrays)

    def __iter__(self) -> Iterator[ArrayRecord]:
        """In submit order."""
        return iter(self._arrays.values())

    def get(self, array_id: str) -> ArrayRecord | None:
        return self._arrays.get(array_id)

    def of(self, job: ClusterJob) -> ArrayRecord | None:
        """The array ``job`` is a task of; None for a job of its own."""
        if not job.spec.HasField("array"):
            return None
        split = split_task_id(job.id)
        return self._arrays.get(split[0]) if split is not None else None

    def by_key(self, user: str, key: str) -> ArrayRecord | None:
        array_id = self._by_key.get((user, key)) if key else None
        return self._arrays.get(array_id) if array_id is not None else None

    def add(self, record: ArrayRecord) -> None:
        self._arrays[record.id] = record
        if record.idempotency_key:
            self._by_key.setdefault((record.user, record.idempotency_key), record.id)

    def note(self, before: ClusterJob | None, job: ClusterJob | None) -> None:
        """Counts a task's change: made (``before`` None), changed, or forgotten
        (``job`` None: the array goes when its last task does)."""
        some = job if job is not None else before
        if some is None or not some.spec.HasField("array"):
            return
        split = split_task_id(some.id)
        record = self._arrays.get(split[0]) if split is not None else None
        if record is None:
            return
        counts = record.counts
        if job is not None and job.updated_at_us > record.updated_at_us:
            record.updated_at_us = job.updated_at_us
        if before is not None:
            if job is not None and before.state == job.state:
                return
            counts[before.state] -= 1
            if not counts[before.state]:
                del counts[before.state]
        if job is not None:
            counts[job.state] = counts.get(job.state, 0) + 1
            if job.is_terminal and job.state != states.SUCCEEDED:
                record.unsuccessful += 1
        elif not counts:
            self._drop(record)

    def _drop(self, record: ArrayRecord) -> None:
        del self._arrays[record.id]
        key = (record.user, record.idempotency_key)
        if record.idempotency_key and self._by_key.get(key) == record.id:
            del self._by_key[key]

    def messages(self) -> list[control_pb2.ControlArray]:
        return [record.message() for record in self._arrays.values()]

    @classmethod
    def from_messages(cls, messages: list[control_pb2.ControlArray]) -> ArrayTable:
        """The arrays a snapshot holds, their tasks not yet counted (restoring them
        counts them).

        Raises:
            ValueError: an array twice, or one with no array spec.
        """
        table = cls()
        for message in messages:
            if message.id in table._arrays:
                raise ValueError(f"the snapshot holds array {message.id} twice")
            if not message.spec.HasField("array"):
                raise ValueError(f"array {message.id} has no array spec")
            record = new_array(
                message.id,
                message.spec,
                message.user,
                message.submit_order,
                message.submitted_at_us,
                message.idempotency_key,
            )
            table.add(record)
        return table

    def restored_unsuccessful(self, messages: list[control_pb2.ControlArray]) -> None:
        """Sets each restored array's ``unsuccessful`` as the snapshot says (after its
        tasks were counted, which counted only those the queue still holds)."""
        for message in messages:
            record = self._arrays.get(message.id)
            if record is not None:
                record.unsuccessful = message.unsuccessful
