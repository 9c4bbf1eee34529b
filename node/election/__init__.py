"""Leader election: Raft's election with check-quorum, as a pure state machine.

:class:`Election` is driven by time and messages and returns messages to send,
with the term and vote the caller must persist first; :class:`ElectionSimulation`
runs a cluster of them on a fake clock with crashes, restarts, partitions and
loss. The replicated log, voter changes and the gRPC wiring come later (issue 6).
"""

from node.election.config import ElectionConfig
from node.election.errors import ElectionConfigError, ElectionError, ElectionSetupError
from node.election.machine import Election, PersistentState, Role
from node.election.messages import (
    Heartbeat,
    HeartbeatResponse,
    LogPosition,
    Message,
    Outgoing,
    PreVote,
    PreVoteResponse,
    RequestVote,
    VoteResponse,
)
from node.election.simulation import ElectionSimulation, ElectionSimulationError, failover_times

__all__ = [
    "Election",
    "ElectionConfig",
    "ElectionConfigError",
    "ElectionError",
    "ElectionSetupError",
    "ElectionSimulation",
    "ElectionSimulationError",
    "Heartbeat",
    "HeartbeatResponse",
    "LogPosition",
    "Message",
    "Outgoing",
    "PersistentState",
    "PreVote",
    "PreVoteResponse",
    "RequestVote",
    "Role",
    "VoteResponse",
    "failover_times",
]
