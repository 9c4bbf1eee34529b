"""The messages voters exchange to elect a leader (Raft §5.2, §5.4.1).

- :class:`RequestVote` / :class:`VoteResponse`: a candidate asks for votes,
  showing the position of its log's last entry so that voters can refuse one
  whose log is behind theirs;
- :class:`PreVote` / :class:`PreVoteResponse`: before standing, a node asks
  whether it could win (Raft §9.6), without raising anyone's term;
- :class:`Heartbeat` / :class:`HeartbeatResponse`: the leader asserts its term
  (Raft's AppendEntries with no entries; entries come with the replicated log),
  and the answers are what the leader's quorum lease counts.

Every message carries its sender's term: a node that sees a higher term adopts it
and becomes a follower (except in a PreVote and a granted PreVoteResponse, whose
term is only proposed). Nodes are named by their voter id; the caller maps ids to
addresses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class LogPosition:
    """Term and index of the last entry of a log (0, 0 for an empty log).

    Ordering is Raft's "at least as up to date": the later last term wins, and at
    equal terms the longer log.
    """

    term: int = 0
    index: int = 0


@dataclass(frozen=True, slots=True)
class RequestVote:
    """``candidate`` asks for a vote in ``term``; its log ends at ``last_log``."""

    term: int
    candidate: str
    last_log: LogPosition


@dataclass(frozen=True, slots=True)
class VoteResponse:
    """``voter``'s answer to a RequestVote, at the voter's current ``term``."""

    term: int
    voter: str
    granted: bool


@dataclass(frozen=True, slots=True)
class PreVote:
    """Would you vote for ``candidate`` in ``term`` (its current term + 1)? Asked
    before standing (Raft §9.6); answering it changes nothing at the voter."""

    term: int
    candidate: str
    last_log: LogPosition


@dataclass(frozen=True, slots=True)
class PreVoteResponse:
    """``voter``'s answer to a PreVote. ``term`` is the PreVote's term when
    ``granted``, and the voter's own term when refused."""

    term: int
    voter: str
    granted: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """``leader`` leads in ``term`` (an AppendEntries without entries)."""

    term: int
    leader: str


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    """``follower`` heard a heartbeat; ``accepted`` is False when the heartbeat's
    term was behind the follower's ``term`` (the stale leader then steps down)."""

    term: int
    follower: str
    accepted: bool


EMPTY_LOG = LogPosition()
"""The position of a log with no entries."""


Message = RequestVote | VoteResponse | PreVote | PreVoteResponse | Heartbeat | HeartbeatResponse


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the state machine wants sent to the voter named ``destination``."""

    destination: str
    message: Message
