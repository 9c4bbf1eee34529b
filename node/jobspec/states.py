"""Job and run states: their names in the store and their wire enum.

pending → scheduled → starting → running → succeeded | failed | cancelled | lost
                                 (failed/lost → pending while retries remain; lost with
                                  its node → pending, no retry spent, unless no_requeue)
"""

from __future__ import annotations

from typing import Final

from murmur.v1 import types_pb2

PENDING: Final = "pending"
SCHEDULED: Final = "scheduled"
STARTING: Final = "starting"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
LOST: Final = "lost"

TERMINAL: Final = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})

LEASE_LAPSED_REASON: Final = "lost: no word from a leader"
"""How a node's reason begins for a run it stopped because the run's lease lapsed: the
node was cut off from every leader (the process supervisor and the docker lease guard
word it so too)."""
NODE_RESTARTED_REASON: Final = "lost: the node restarted"
"""How a node's reason begins for a run that was gone when the node came back up."""
NOT_REACHED_REASON: Final = "lost: never reached its node"
"""How the leader's reason begins for a gang's rank whose node refused the
connection: the node never had it (a single-node run is taken back instead)."""


def lost_with_its_node(reason: str) -> bool:
    """Whether a run its node reports lost with ``reason`` was lost for the node's sake
    (cut off from every leader, or restarted without it), not the job's: its job goes
    back to the queue without spending a retry (node/control/queue/state.py)."""
    return reason.startswith((LEASE_LAPSED_REASON, NODE_RESTARTED_REASON, NOT_REACHED_REASON))


_TO_PROTO: dict[str, types_pb2.JobState.ValueType] = {
    PENDING: types_pb2.JOB_STATE_PENDING,
    SCHEDULED: types_pb2.JOB_STATE_SCHEDULED,
    STARTING: types_pb2.JOB_STATE_STARTING,
    RUNNING: types_pb2.JOB_STATE_RUNNING,
    SUCCEEDED: types_pb2.JOB_STATE_SUCCEEDED,
    FAILED: types_pb2.JOB_STATE_FAILED,
    CANCELLED: types_pb2.JOB_STATE_CANCELLED,
    LOST: types_pb2.JOB_STATE_LOST,
}
_FROM_PROTO = {value: key for key, value in _TO_PROTO.items()}


def to_proto(state: str) -> types_pb2.JobState.ValueType:
    return _TO_PROTO.get(state, types_pb2.JOB_STATE_UNSPECIFIED)


def from_proto(state: types_pb2.JobState.ValueType) -> str:
    """The store name of a wire state.

    Raises:
        ValueError: JOB_STATE_UNSPECIFIED or a value this version does not know.
    """
    try:
        return _FROM_PROTO[state]
    except KeyError:
        raise ValueError(f"unknown job state {state}") from None
