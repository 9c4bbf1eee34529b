"""The messages Raft nodes exchange, and the log entries they carry (Raft §5, §6, §7, §9.6).

- :class:`RequestVote` / :class:`VoteResponse`: a candidate asks for votes,
  showing the position of its log's last entry so that voters can refuse one
  whose log is behind theirs (§5.4.1);
- :class:`PreVote` / :class:`PreVoteResponse`: before standing, a node asks
  whether it could win (§9.6), without raising anyone's term;
- :class:`AppendEntries` / :class:`AppendResponse`: the leader replicates its log
  (an AppendEntries without entries is the heartbeat), and the answers are what
  the leader's commit index and quorum lease count;
- :class:`InstallSnapshot`: the leader sends a follower that lags behind the
  leader's compacted log a whole snapshot instead (§7); it is answered with an
  :class:`AppendResponse`.

Every message carries its sender's term: a node that sees a higher term adopts it
and becomes a follower (except in a PreVote and a granted PreVoteResponse, whose
term is only proposed). Nodes are named by their node name; the caller maps names
to addresses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class LogPosition:
    """Term and index of the last entry of a log (0, 0 for an empty log).

    Ordering is Raft's "at least as up to date": the later last term wins, and at
    equal terms the longer log.
    """

    term: int = 0
    index: int = 0


EMPTY_LOG = LogPosition()
"""The position of a log with no entries."""


class EntryKind(enum.Enum):
    COMMAND = "command"
    """An opaque command for the replicated state machine (``data``)."""
    NOOP = "noop"
    """The entry a new leader appends at the start of its term, so that it can
    commit (and learn the commit index of) everything before it (§5.4.2, §8)."""
    VOTERS = "voters"
    """A new voter set (``voters``), taking effect as soon as it is in a log
    (single-server changes, Ongaro's thesis §4.1)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of the replicated log."""

    term: int
    index: int
    kind: EntryKind
    data: bytes = b""
    """The command, for ``EntryKind.COMMAND``."""
    voters: frozenset[str] = frozenset()
    """The whole new voter set, for ``EntryKind.VOTERS``."""

    @property
    def position(self) -> LogPosition:
        return LogPosition(self.term, self.index)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The replicated state up to and including ``last`` (the log before it is
    discarded), with the voter set in force at ``last``. ``data`` is opaque to
    Raft: the state machine makes and restores it."""

    last: LogPosition
    voters: frozenset[str]
    data: bytes


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
    before standing (§9.6); answering it changes nothing at the voter."""

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
class AppendEntries:
    """``leader`` (of ``term``) sends ``entries``, which follow the entry at
    ``previous``, and says its commit index. No entries: a heartbeat."""

    term: int
    leader: str
    previous: LogPosition
    entries: tuple[LogEntry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """``follower``'s answer to an AppendEntries or an InstallSnapshot.

    ``success``: the follower's log now matches the leader's up to
    ``match_index``. Refused (``success`` False) at the same term: the log did not
    hold ``previous``, and ``match_index`` is a hint, the follower's last index,
    so the leader can skip back at once. Refused with a higher ``term``: the
    sender is a stale leader."""

    term: int
    follower: str
    success: bool
    match_index: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """``leader`` (of ``term``) replaces the follower's log up to ``snapshot.last``."""

    term: int
    leader: str
    snapshot: Snapshot


Message = (
    RequestVote
    | VoteResponse
    | PreVote
    | PreVoteResponse
    | AppendEntries
    | AppendResponse
    | InstallSnapshot
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the state machine wants sent to the node named ``destination``."""

    destination: str
    message: Message
