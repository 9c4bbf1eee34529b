"""Errors raised by the scheduler.

The scheduler is pure policy: the only errors it raises on purpose are about its
input, caught at the boundary (the snapshot is built by the node or the leader from
state it owns, so an error here is a bug in that code, reported with what to fix)::

    SchedulerError
    ├── InvalidSnapshotError        a snapshot value that cannot describe a real cluster
    │   ├── InvalidGpuStateError    a GPU with a negative index or memory
    │   ├── InvalidNodeStateError   negative or over-total capacity, duplicate GPU indices
    │   ├── InvalidJobRequestError  an empty id, negative resources, fewer than one node
    │   ├── DuplicateNodeError      two nodes with the same name in one snapshot
    │   └── DuplicateJobError       two pending jobs with the same id in one snapshot
    └── QueueOrderError             a queue-order policy returned something that is not
                                    a permutation of the pending jobs
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of every error the scheduler raises on purpose."""


class InvalidSnapshotError(SchedulerError, ValueError):
    """A snapshot value that cannot describe a real cluster."""


class InvalidGpuStateError(InvalidSnapshotError):
    """A GPU state with an impossible value.

    Attributes:
        index: the GPU's index as given.
        problem: what is wrong, in a few words.
    """

    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        self.problem = problem
        super().__init__(f"invalid GPU {index}: {problem}")


class InvalidNodeStateError(InvalidSnapshotError):
    """A node state with an impossible value.

    Attributes:
        node: the node's name as given.
        problem: what is wrong, in a few words.
    """

    def __init__(self, node: str, problem: str) -> None:
        self.node = node
        self.problem = problem
        super().__init__(f"invalid state for node {node!r}: {problem}")


class InvalidJobRequestError(InvalidSnapshotError):
    """A job request with an impossible value.

    Attributes:
        job_id: the job's id as given.
        problem: what is wrong, in a few words.
    """

    def __init__(self, job_id: str, problem: str) -> None:
        self.job_id = job_id
        self.problem = problem
        super().__init__(f"invalid request for job {job_id!r}: {problem}")


class DuplicateNodeError(InvalidSnapshotError):
    """Two nodes of one snapshot share a name; names identify nodes in a plan."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"node {node!r} appears twice in the snapshot; node names must be unique")


class DuplicateJobError(InvalidSnapshotError):
    """Two pending jobs of one snapshot share an id; a plan must place each once."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} is pending twice in the snapshot; job ids must be unique")


class QueueOrderError(SchedulerError):
    """A queue-order policy lost, duplicated or invented pending jobs.

    Attributes:
        problem: what the order got wrong, in a few words.
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"queue order is not a permutation of the pending jobs: {problem}; "
            "a QueueOrder must return every pending job exactly once"
        )
