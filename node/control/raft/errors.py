"""Errors raised by the election package.

    ElectionError
    ├── ElectionConfigError    an ElectionConfig field is out of range
    ├── ElectionSetupError     a Raft was built from a persisted log that is not contiguous
    ├── NotLeaderError         propose / change_voters / add_learner on a node that does not lead
    ├── VoterChangeError       a voter change Raft refuses (not one voter, or one still pending)
    └── CompactionError        compact() with a snapshot beyond what was applied, or not of this log

The state machine itself raises nothing on stale or unexpected messages: a message
it cannot use is ignored, the way a lost packet would be.
"""

from __future__ import annotations


class ElectionError(Exception):
    """Base of the election package's errors."""


class ElectionConfigError(ElectionError, ValueError):
    """An ElectionConfig field is out of range; the message names the field."""


class ElectionSetupError(ElectionError, ValueError):
    """The persisted entries do not follow the snapshot, or each other, without a gap."""


class NotLeaderError(ElectionError):
    """Only the leader takes proposals, voter changes and learners. ``leader`` is the
    leader this node knows of (None if none), for the caller to redirect to."""

    def __init__(self, node_id: str, leader: str | None) -> None:
        known = f"; the leader is {leader!r}" if leader is not None else "; no leader is known"
        super().__init__(f"raft: {node_id!r} is not the leader{known}")
        self.leader = leader


class VoterChangeError(ElectionError, ValueError):
    """A voter change was refused; the message says why."""


class CompactionError(ElectionError, ValueError):
    """compact() was given a snapshot the log cannot take; the message says why."""
