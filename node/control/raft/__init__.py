"""Raft as a pure state machine: election, replicated log, voter changes, snapshots.

:class:`Raft` is driven by time and messages; :meth:`Raft.ready` hands out what to
persist, then the messages to send, then the committed entries to apply.
:class:`RaftSimulation` runs clusters of them on a fake clock with crashes,
restarts, partitions, loss, voter changes and compaction, and checks Raft's safety
properties as it goes. The daemon drives the machine through ``node/control/consensus/``.
"""

from murmur.node.control.raft.config import ElectionConfig
from murmur.node.control.raft.errors import (
    CompactionError,
    ElectionConfigError,
    ElectionError,
    ElectionSetupError,
    NotLeaderError,
    VoterChangeError,
)
from murmur.node.control.raft.messages import (
    EMPTY_LOG,
    AppendEntries,
    AppendResponse,
    EntryKind,
    InstallSnapshot,
    LogEntry,
    LogPosition,
    Message,
    Outgoing,
    PreVote,
    PreVoteResponse,
    RequestVote,
    Snapshot,
    VoteResponse,
)
from murmur.node.control.raft.raft import (
    NEW_NODE,
    PersistentState,
    Raft,
    Ready,
    Role,
    bootstrap_entry,
)
from murmur.node.control.raft.simulation import (
    RaftSimulation,
    RaftSimulationError,
    commit_latencies,
    failover_times,
)

__all__ = [
    "EMPTY_LOG",
    "NEW_NODE",
    "AppendEntries",
    "AppendResponse",
    "CompactionError",
    "ElectionConfig",
    "ElectionConfigError",
    "ElectionError",
    "ElectionSetupError",
    "EntryKind",
    "InstallSnapshot",
    "LogEntry",
    "LogPosition",
    "Message",
    "NotLeaderError",
    "Outgoing",
    "PersistentState",
    "PreVote",
    "PreVoteResponse",
    "Raft",
    "RaftSimulation",
    "RaftSimulationError",
    "Ready",
    "RequestVote",
    "Role",
    "Snapshot",
    "VoteResponse",
    "VoterChangeError",
    "bootstrap_entry",
    "commit_latencies",
    "failover_times",
]
