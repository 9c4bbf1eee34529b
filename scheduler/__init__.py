"""Murmur's scheduler: pure placement and queue policy over a cluster snapshot.

No I/O, no clock, nothing from ``node/`` or ``storage/``: the node's job manager
(one node) or the elected leader (many nodes) builds a ``ClusterSnapshot`` and asks
``schedule`` for a ``Plan``. Feasibility (``check_node``: can this node run it?) is
apart from ranking (``rank_nodes``: which node is best?) and from the queue order
(``QueueOrder``: who goes first?); ``schedule`` combines them.
"""

from murmur.scheduler.errors import (
    DuplicateJobError,
    DuplicateNodeError,
    InvalidGpuStateError,
    InvalidJobRequestError,
    InvalidNodeStateError,
    InvalidSnapshotError,
    QueueOrderError,
    SchedulerError,
)
from murmur.scheduler.feasibility import (
    CpusBusy,
    DatasetAbsent,
    GpuModelAbsent,
    GpusBusy,
    Infeasible,
    MemoryBusy,
    NodeUnschedulable,
    TooFewCpus,
    TooFewGpus,
    TooLittleMemory,
    check_node,
    usable_gpu_indices,
)
from murmur.scheduler.plan import Placement, Plan, PlanBuilder, RankAssignment, Waiting, schedule
from murmur.scheduler.policy import (
    DEFAULT_POLICY,
    FIFO_FIRST_FIT_POLICY,
    NO_DEFAULT_REQUEST,
    DatasetLocality,
    DefaultRequest,
    NodeChoice,
    Policy,
)
from murmur.scheduler.queue_order import QueueOrder, priority_then_submit_order, submit_order_only
from murmur.scheduler.ranking import NodeScore, choose_gpu_indices, rank_nodes, score_node
from murmur.scheduler.reservation import Reservation
from murmur.scheduler.snapshot import ClusterSnapshot, GpuState, JobRequest, NodeState, Release

__all__ = [
    "DEFAULT_POLICY",
    "FIFO_FIRST_FIT_POLICY",
    "NO_DEFAULT_REQUEST",
    "ClusterSnapshot",
    "CpusBusy",
    "DatasetAbsent",
    "DatasetLocality",
    "DefaultRequest",
    "DuplicateJobError",
    "DuplicateNodeError",
    "GpuModelAbsent",
    "GpuState",
    "GpusBusy",
    "Infeasible",
    "InvalidGpuStateError",
    "InvalidJobRequestError",
    "InvalidNodeStateError",
    "InvalidSnapshotError",
    "JobRequest",
    "MemoryBusy",
    "NodeChoice",
    "NodeScore",
    "NodeState",
    "NodeUnschedulable",
    "Placement",
    "Plan",
    "PlanBuilder",
    "Policy",
    "QueueOrder",
    "QueueOrderError",
    "RankAssignment",
    "Release",
    "Reservation",
    "SchedulerError",
    "TooFewCpus",
    "TooFewGpus",
    "TooLittleMemory",
    "Waiting",
    "check_node",
    "choose_gpu_indices",
    "priority_then_submit_order",
    "rank_nodes",
    "schedule",
    "score_node",
    "submit_order_only",
    "usable_gpu_indices",
]
