"""Dependencies between jobs (``JobSpec.after``, ``--after ID[:ok|any|failed]``): when
one is met, when it can no longer be, and the words a waiting job shows.

A dependency names a job, a task ``ID[i]`` or an array (all its tasks), with a
condition (Slurm's afterok, afterany, afternotok):

=========  ===========================================  ==================================
condition  met when                                     never met when
=========  ===========================================  ==================================
ok         it succeeded (an array: every task did)      it ended otherwise (an array: as
                                                        soon as one task did)
any        it ended, however (an array: every task)     (always met in the end)
failed     it ended otherwise (an array: every task     it succeeded (an array: every
           ended, at least one otherwise)               task did)
=========  ===========================================  ==================================

A job waits until every dependency is met; the first that can never be ends it
(``dependency never satisfied: job A failed``). A submission may only name jobs the
queue holds, made before it in the log (or earlier in the same batch), so the
dependencies never form a cycle. A job the queue no longer holds (forgotten past
its retention) counts as met: had its end made a dependency impossible, the
waiting job would have ended with it then.

``DependentsIndex`` keeps, for each job or array waited for, the jobs waiting on
it, so an end looks only at those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from murmur.node.control.queue.arrays import ArrayRecord
from murmur.node.control.queue.records import ClusterJob
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import ANY, FAILED, OK, condition_word
from murmur.v1 import types_pb2

NEVER_SATISFIED = "dependency never satisfied"
"""How the reason of a job its dependency ended begins."""


class Verdict(Enum):
    WAITING = "waiting"
    MET = "met"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """Where one dependency (or all of a job's) stands, and in words: what it waits
    for, what met it, or what made it impossible."""

    verdict: Verdict
    why: str


_WAITING_FOR = {OK: "succeed", ANY: "end", FAILED: "end other than succeeded"}


def status_of(
    dependency: types_pb2.Dependency,
    job_of: Callable[[str], ClusterJob | None],
    array_of: Callable[[str], ArrayRecord | None],
) -> DependencyStatus:
    """Where ``dependency`` stands with the queue as it is."""
    condition = condition_word(dependency.condition)
    target = dependency.job_id
    job = job_of(target)
    if job is not None:
        return _job_status(job, condition)
    record = array_of(target)
    if record is not None:
        return _array_status(record, condition)
    return DependencyStatus(Verdict.MET, f"job {target} ended long ago")


def _job_status(job: ClusterJob, condition: str) -> DependencyStatus:
    what = f"job {job.id}"
    if not job.is_terminal:
        return DependencyStatus(
            Verdict.WAITING, f"waiting for {what} to {_WAITING_FOR[condition]} ({job.state})"
        )
    succeeded = job.state == states.SUCCEEDED
    ended = f"{what} {_ended_word(job.state)}"
    if condition == ANY or (condition == OK) == succeeded:
        return DependencyStatus(Verdict.MET, ended)
    return DependencyStatus(Verdict.NEVER, ended)


def _array_status(record: ArrayRecord, condition: str) -> DependencyStatus:
    what = f"array {record.id}"
    if condition == OK and record.unsuccessful:
        return DependencyStatus(
            Verdict.NEVER, f"{what}: {record.unsuccessful} task(s) did not succeed"
        )
    if not record.finished:
        live = sum(record.counts.get(state, 0) for state in _LIVE)
        return DependencyStatus(
            Verdict.WAITING,
            f"waiting for every task of {what} to {_WAITING_FOR[condition]} "
            f"({live} of {len(record.task_ids)} not ended)",
        )
    if condition == FAILED and not record.unsuccessful:
        return DependencyStatus(Verdict.NEVER, f"every task of {what} succeeded")
    if condition == FAILED:
        return DependencyStatus(
            Verdict.MET, f"{what} ended, {record.unsuccessful} task(s) not succeeded"
        )
    return DependencyStatus(Verdict.MET, f"every task of {what} ended")


_LIVE = (states.PENDING, states.SCHEDULED, states.STARTING, states.RUNNING)


def _ended_word(state: str) -> str:
    return "was cancelled" if state == states.CANCELLED else state


def overall(
    dependencies: Sequence[types_pb2.Dependency],
    job_of: Callable[[str], ClusterJob | None],
    array_of: Callable[[str], ArrayRecord | None],
) -> DependencyStatus:
    """Where a job's dependencies stand together: the first that can never be met,
    else the first still waited for, else met (the words of all that met it)."""
    waiting: DependencyStatus | None = None
    met: list[str] = []
    for dependency in dependencies:
        status = status_of(dependency, job_of, array_of)
        if status.verdict is Verdict.NEVER:
            return status
        if status.verdict is Verdict.WAITING and waiting is None:
            waiting = status
        elif status.verdict is Verdict.MET:
            met.append(status.why)
    if waiting is not None:
        return waiting
    return DependencyStatus(Verdict.MET, "; ".join(met))


class DependentsIndex:
    """Job or array id → the ids of the pending jobs that wait on it, in the order
    they were registered (log order)."""

    def __init__(self) -> None:
        self._waiting_on: dict[str, dict[str, None]] = {}

    def register(self, job: ClusterJob) -> None:
        """``job`` waits on each job its spec names."""
        for dependency in job.spec.after:
            self._waiting_on.setdefault(dependency.job_id, {})[job.id] = None

    def waiting_on(self, target: str) -> list[str]:
        """The jobs registered as waiting on ``target`` (a copy)."""
        return list(self._waiting_on.get(target, ()))

    def discard(self, target: str, job_id: str) -> None:
        waiting = self._waiting_on.get(target)
        if waiting is None:
            return
        waiting.pop(job_id, None)
        if not waiting:
            del self._waiting_on[target]

    def forget(self, targets: Iterable[str]) -> None:
        """``targets`` are gone from the queue: nothing waits on them any more."""
        for target in targets:
            self._waiting_on.pop(target, None)

    def __len__(self) -> int:
        return len(self._waiting_on)
