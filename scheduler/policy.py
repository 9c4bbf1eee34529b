"""The knobs of a scheduling policy, in one frozen value.

``DEFAULT_POLICY`` is what Murmur runs. ``FIFO_FIRST_FIT_POLICY`` is the baseline
benchmarks and trace replays compare against: arrival order, first node that fits,
no reservations, the same feasibility rules.
"""

from __future__ import annotations

import enum
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
class Policy:
    """A scheduling policy.

    Attributes:
        queue_order: who is considered first; see ``scheduler.queue_order``.
        node_choice: how a node is picked among feasible ones.
        dataset_locality: whether datasets bind a job to the nodes that hold them.
        reserve_for_blocked_jobs: the first blocked job of each queue reserves the
            nodes closest to fitting it against every later job, so big jobs do not
            starve behind a stream of small ones (see ``scheduler.plan``).
    """

    queue_order: QueueOrder = priority_then_submit_order
    node_choice: NodeChoice = NodeChoice.BEST_FIT
    dataset_locality: DatasetLocality = DatasetLocality.PREFER
    reserve_for_blocked_jobs: bool = True


DEFAULT_POLICY = Policy()
"""Priority order, best fit with data locality, reservations for blocked jobs."""

FIFO_FIRST_FIT_POLICY = Policy(
    queue_order=submit_order_only,
    node_choice=NodeChoice.FIRST_FIT,
    reserve_for_blocked_jobs=False,
)
"""The baseline: arrival order, first node that fits, later jobs skip blocked ones."""
