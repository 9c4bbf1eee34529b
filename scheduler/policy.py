"""The knobs of a scheduling policy, in one frozen value.

``DEFAULT_POLICY`` is what Murmur runs, with the default request its leader's
configuration gives (``DefaultRequest``). ``FIFO_FIRST_FIT_POLICY`` is the baseline
benchmarks and trace replays compare against: arrival order, first node that fits,
no reservations, the same feasibility rules.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from murmur.scheduler.queue_order import QueueOrder, priority_then_submit_order, submit_order_only


class DatasetLocality(enum.Enum):
    """Whether a job that names datasets must run where they are.

    PREFER (default): nodes holding the job's datasets rank first (all of them >
    some > none), but a job goes to a node without its data rather than wait,
    unless a dataset is on no node at all, when it waits. Pick this when the
    runtime can reach data from other nodes (shared or copied).

    REQUIRE: a rank may only go to a node holding every dataset the job names;
    the job waits for room there ("dataset imagenet is on node-3, which has 1 free
    GPU"). Pick this when datasets are only mounted from local disks.
    """

    PREFER = "prefer"
    REQUIRE = "require"


class NodeChoice(enum.Enum):
    """How a node is picked among those where a rank fits.

    BEST_FIT: score every feasible node (data locality, then fewest free GPUs
    left, then name) and take the best; see ``scheduler.ranking``.
    FIRST_FIT: the first feasible node in snapshot order, no scoring (baseline).
    """

    BEST_FIT = "best-fit"
    FIRST_FIT = "first-fit"


@dataclass(frozen=True, slots=True)
class DefaultRequest:
    """What a job that names no CPUs, or no memory, counts as when it is placed.

    A job that names none still uses some: counted as nothing, any number of them
    fit one node (twelve CPU-only jobs all landed on one of three nodes). Counted
    as these, such jobs fill a node by what they use and then go elsewhere. They
    weigh in placement only: the job runs unlimited, as it asked. Zero (the
    default here) counts a job as exactly what it names; Murmur's leader sets them
    from its configuration (``default_job_cpus``, ``default_job_memory_bytes``).

    Attributes:
        cpus: CPUs a rank that names none counts as.
        memory_bytes: memory a rank that names none counts as.
    """

    cpus: float = 0.0
    memory_bytes: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.cpus) or self.cpus < 0:
            raise ValueError(f"a default request's cpus must be >= 0, got {self.cpus}")
        if self.memory_bytes < 0:
            raise ValueError(f"a default request's memory must be >= 0, got {self.memory_bytes}")

    def cpus_of(self, asked: float) -> float:
        """The CPUs a rank that asks ``asked`` counts as."""
        return asked if asked > 0 else self.cpus

    def memory_of(self, asked: int) -> int:
        """The memory a rank that asks ``asked`` bytes counts as."""
        return asked if asked > 0 else self.memory_bytes


NO_DEFAULT_REQUEST = DefaultRequest()
"""Every job counts as what it names."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A scheduling policy.

    Attributes:
        queue_order: who is considered first; see ``scheduler.queue_order``.
        node_choice: how a node is picked among feasible ones.
        dataset_locality: whether datasets bind a job to the nodes that hold them.
        reserve_for_blocked_jobs: the first blocked job of each queue reserves the
            nodes closest to fitting it against every later job, so big jobs do not
            starve behind a stream of small ones (see ``scheduler.plan``).
        default_request: what a job that names no CPUs or no memory counts as.
    """

    queue_order: QueueOrder = priority_then_submit_order
    node_choice: NodeChoice = NodeChoice.BEST_FIT
    dataset_locality: DatasetLocality = DatasetLocality.PREFER
    reserve_for_blocked_jobs: bool = True
    default_request: DefaultRequest = NO_DEFAULT_REQUEST


DEFAULT_POLICY = Policy()
"""Priority order, best fit with data locality, reservations for blocked jobs."""

FIFO_FIRST_FIT_POLICY = Policy(
    queue_order=submit_order_only,
    node_choice=NodeChoice.FIRST_FIT,
    reserve_for_blocked_jobs=False,
)
"""The baseline: arrival order, first node that fits, later jobs skip blocked ones."""
