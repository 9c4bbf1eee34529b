"""The replicated control state: the cluster's job queue.

The pure part (commands, records, state, codec) does no I/O, no asyncio, no clock:
the Raft runner (``murmur.node.control.consensus``) applies committed entries to a
``ControlState`` on every voter. ``ClusterJobs`` proposes and reads through Raft,
the forwarder batches proposals to the leader, the archive keeps forgotten jobs.

    commands.py    the log's commands and their bytes (murmur.v1.ControlCommand)
    records.py     ClusterJob, Assignment and the other values the state holds
    results.py     ApplyResult: errors as values
    state.py       ControlState: apply, queries, snapshot / restore
    codec.py       records to and from the snapshot's protobuf
    arrays.py dependencies.py projects.py
                   arrays and their tasks, jobs that wait on others, a project's defaults
    convert.py     ClusterJob to murmur.v1.Job for the client API
    cluster_jobs.py        ClusterJobs: the queue as the services use it
    job_listing.py array_view.py   ListJobs' pages and filters; an array as one record
    proposal_forwarder.py  proposals from a follower, batched to the leader
    job_archive.py         jobs the log forgot (retention), on this node's disk
"""

from murmur.node.control.queue.codec import ControlSnapshotError
from murmur.node.control.queue.commands import (
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
from murmur.node.control.queue.convert import job_message
from murmur.node.control.queue.records import (
    ACTIVE_STATES,
    Assignment,
    ClusterJob,
    DrainRecord,
    EndedRun,
    JobEvent,
)
from murmur.node.control.queue.results import ApplyResult, ErrorKind
from murmur.node.control.queue.state import ControlState, retry_backoff_us

__all__ = [
    "ACTIVE_STATES",
    "ApplyResult",
    "AssignJob",
    "Assignment",
    "CancelJob",
    "ClusterJob",
    "Command",
    "CommandDecodeError",
    "ControlSnapshotError",
    "ControlState",
    "DrainRecord",
    "EndedRun",
    "ErrorKind",
    "ForgetJobs",
    "JobEvent",
    "NodeLost",
    "ReportRun",
    "RevokeAssignment",
    "SetNodeDrain",
    "SubmitJob",
    "decode",
    "encode",
    "job_message",
    "retry_backoff_us",
]
