"""Job and run states: their names in the store and their wire enum.

pending → scheduled → starting → running → succeeded | failed | cancelled | lost
                                                     (failed/lost → pending while retries remain)
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
