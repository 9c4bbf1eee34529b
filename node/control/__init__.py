"""The replicated control state (the cluster's job queue) and the leader's placement step.

Both pure: no I/O, no asyncio, no clock. The Raft runner (``node.consensus``) applies
committed entries to a ``ControlState`` on every voter; the leader plans with
``plan_cluster`` and proposes the ``AssignJob`` commands it returns.

    commands.py    the log's commands and their bytes (murmur.v1.ControlCommand)
    records.py     ClusterJob, Assignment and the other values the state holds
    results.py     ApplyResult: errors as values
    state.py       ControlState: apply, queries, snapshot / restore
    codec.py       records to and from the snapshot's protobuf
    convert.py     ClusterJob to murmur.v1.Job for the client API
    placement.py   offers + state → scheduler snapshot → AssignJob commands
"""

from node.control.codec import ControlSnapshotError
from node.control.commands import (
    AssignJob,
    CancelJob,
    Command,
    CommandDecodeError,
    ForgetJobs,
    NodeLost,
    ReportRun,
    RevokeAssignment,
    SetNodeDrain,
    SubmitJob,
    decode,
    encode,
)
from node.control.convert import job_message
from node.control.placement import (
    ClusterPlan,
    GpuOffer,
    NodeOffer,
    job_request,
    plan_assignments,
    plan_cluster,
    waiting_reasons,
)
from node.control.records import (
    ACTIVE_STATES,
    Assignment,
    ClusterJob,
    DrainRecord,
    EndedRun,
    JobEvent,
)
from node.control.results import ApplyResult, ErrorKind
from node.control.state import ControlState, retry_backoff_us

__all__ = [
    "ACTIVE_STATES",
    "ApplyResult",
    "AssignJob",
    "Assignment",
    "CancelJob",
    "ClusterJob",
    "ClusterPlan",
    "Command",
    "CommandDecodeError",
    "ControlSnapshotError",
    "ControlState",
    "DrainRecord",
    "EndedRun",
    "ErrorKind",
    "ForgetJobs",
    "GpuOffer",
    "JobEvent",
    "NodeLost",
    "NodeOffer",
    "ReportRun",
    "RevokeAssignment",
    "SetNodeDrain",
    "SubmitJob",
    "decode",
    "encode",
    "job_message",
    "job_request",
    "plan_assignments",
    "plan_cluster",
    "retry_backoff_us",
    "waiting_reasons",
]
