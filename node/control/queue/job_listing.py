"""One page of ``ListJobs`` from the control state: the filters the state has no index
for (project, labels, ids), arrays folded into one record each, and the page token.

Folding: unless the request asks for ``tasks``, an array whose every task (that the
queue holds) matches the filters comes as one record, the array's, where its first
task would be; an array only some of whose tasks match (``--state running``, a
sweep's label) shows those tasks alone. ``ids`` may name an array, which then
matches whole.

Order and pages: jobs in submit order; the jobs of one entry (an array's tasks, a
batch) share their submit order and keep the order the entry made them in. A page
token is ``S`` (after every job of entry S) or ``S:K`` (after the first K records
of entry S), so a page may end in the middle of an array's tasks or of a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from murmur.node.control.queue.arrays import ArrayRecord
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states as job_states
from murmur.node.jobspec.arrays import split_task_id, task_labels
from murmur.v1 import cluster_pb2

Entry = ClusterJob | ArrayRecord
"""A record of a page: a job (a task too), or a whole array."""


@dataclass(frozen=True, slots=True)
class PageToken:
    """Where a page starts: after the first ``within`` records of entry ``after``
    (``within`` 0: after all of them)."""

    after: int = 0
    within: int = 0

    def text(self) -> str:
        return f"{self.after}:{self.within}" if self.within else str(self.after)


def parse_page_token(text: str) -> PageToken:
    """The token ``PageToken.text`` wrote; an empty one starts at the beginning.

    Raises:
        ValueError: not a token of this form.
    """
    if not text:
        return PageToken()
    after, colon, within = text.partition(":")
    token = PageToken(int(after), int(within) if colon else 0)
    if token.after < 0 or token.within < 0:
        raise ValueError(f"page token {text[:32]!r} is not one this node gave")
    return token


def labels_of(job: ClusterJob) -> Mapping[str, str]:
    """A job's labels as its record shows them (a task's with its sweep values)."""
    split = split_task_id(job.id) if job.spec.HasField("array") else None
    if split is None or not job.spec.array.sweep:
        return job.spec.labels
    return {**job.spec.labels, **dict(task_labels(job.spec, split[1]))}


def matches(job: ClusterJob, request: cluster_pb2.ListJobsRequest, ids: Set[str]) -> bool:
    """Whether ``job`` passes the filters the state has no index for (``ids``: the
    request's, as a set)."""
    if request.project and job.spec.project != request.project:
        return False
    if ids and job.id not in ids:
        split = split_task_id(job.id) if job.spec.HasField("array") else None
        if split is None or split[0] not in ids:
            return False
    if request.labels:
        labels = labels_of(job)
        if any(labels.get(key) != value for key, value in request.labels.items()):
            return False
    return True


def listed(control: ControlState, request: cluster_pb2.ListJobsRequest) -> list[Entry]:
    """Every record the request matches, folded as the module docstring says, in order."""
    wanted = [job_states.from_proto(state) for state in request.states]
    found = control.jobs(
        states=wanted or None, user=request.user or None, queue=request.queue or None
    )
    ids = set(request.ids)
    matched = [job for job in found if matches(job, request, ids)]
    if request.tasks:
        return list(matched)
    per_array: dict[str, int] = {}
    for job in matched:
        record = control.arrays.of(job)
        if record is not None:
            per_array[record.id] = per_array.get(record.id, 0) + 1
    folded = {
        array_id
        for array_id, count in per_array.items()
        if (record := control.array(array_id)) is not None and count == record.held
    }
    entries: list[Entry] = []
    shown: set[str] = set()
    for job in matched:
        record = control.arrays.of(job) if folded else None
        if record is None or record.id not in folded:
            entries.append(job)
        elif record.id not in shown:
            shown.add(record.id)
            entries.append(record)
    return entries


def page_of(entries: Iterable[Entry], token: PageToken, limit: int) -> tuple[list[Entry], str]:
    """The ``limit`` records after ``token``, and the token of the next page (empty
    when this one is not full)."""
    page: list[Entry] = []
    last_order, within = -1, 0
    for entry in entries:
        if entry.submit_order != last_order:
            last_order, within = entry.submit_order, 0
        within += 1
        if entry.submit_order < token.after or (
            entry.submit_order == token.after and (not token.within or within <= token.within)
        ):
            continue
        page.append(entry)
        if len(page) == limit:
            return page, PageToken(last_order, within).text()
    return page, ""
