"""`Raft`: leader election, log replication, voter changes and snapshots, as a pure
state machine.

No I/O, no asyncio, no clock: the caller (the daemon, through ``node/control/consensus/``;
the simulation in tests) feeds it time and messages, then collects what they
produced with :meth:`Raft.ready` and handles it in order.

- ``tick(now)`` runs whatever is due: an election timeout (→ PreVotes, or with
  pre-vote off a new term and RequestVotes), a leader's heartbeat round (which also
  resends a batch whose answer is overdue), a leader's lease check.
  ``next_deadline()`` says when to call again.
- ``receive(message, now)`` handles one message.
- ``propose(data, now)``, ``change_voters(voters, now)``: the leader appends a
  command, or a new voter set.
- ``ready()`` pops a :class:`Ready`: term and vote, snapshot, log changes to persist;
  then the messages to send; then the newly committed entries to apply.

Persistence contract. Everything a Ready says to persist (term and vote, snapshot,
truncation, entries) must be durable before any of its messages is sent: a voter
that granted a vote and forgot it after a crash could vote twice in a term, and a
follower that acknowledged entries and lost them could let a committed entry be
overwritten. On restart, build the machine from what was persisted; everything
else (role, commit index, the known leader, the lease, replication progress) is
volatile and starts afresh as a follower whose commit index is the snapshot's.

Rules (Raft §5, §6-§7; Ongaro's thesis §4.1 single-server changes, §6.2
check-quorum, §9.6 pre-vote):

- Election. A message with a higher term makes us a follower of that term, without
  a vote. A voter grants at most one vote per term, only to a candidate whose log is
  at least as up to date as its own (:class:`LogPosition` order), and resets its
  election timer when it does. A candidate that gathers a majority of its voters
  (itself included) leads, counting only grants that arrived within
  ``lease_timeout``: they are its lease's first contacts. A lone voter stands at its
  first tick and wins at once. Requests and answers from nodes outside our voter
  set are ignored, so a removed node cannot disrupt the cluster; AppendEntries and
  InstallSnapshot are taken from any leader (a joining node has no voters yet).
- Pre-vote: at its timeout a voter first asks PreVote for its term + 1, changing
  nothing persistent, and stands only with a majority of yes. A voter says yes when
  the proposed term is above its own, the asker's log is at least as up to date,
  and it has not heard from a leader within ``election_timeout_min``. A voter that
  is asking PreVotes itself and says yes to an asker with a better claim (a more
  up-to-date log, or as up to date and a lower name) steps back, so that two voters
  whose timeouts fell together do not both stand and split the vote.
- Replication. A new leader appends a NOOP entry of its term. It keeps, per
  follower (voter or learner), the next index to send and the highest index known
  to match, and at most one batch of entries (or a snapshot) in flight: a follower
  with nothing in flight gets everything pending at once (up to the batch limits)
  at the next ``ready()``, and a batch unanswered for ``heartbeat_interval`` is
  resent. Every ``heartbeat_interval`` each follower gets an AppendEntries, empty
  or not. The commit index advances to the highest index replicated on a majority
  of voters, and only by counting an entry of the current term (§5.4.2).
- A follower checks that its log holds ``previous`` (refusing with its last index
  as a hint, so the leader skips back at once), truncates a conflicting suffix,
  appends, and sets its commit index to min(leader's commit, last new entry).
- Snapshots. ``compact()`` drops what the caller's snapshot covers; a follower
  whose next index is at or below it gets InstallSnapshot and keeps its log's
  suffix if it holds the snapshot's last entry, else drops its log.
- Voters. A VOTERS entry takes effect as soon as it is in a log (leader's
  included), and truncating it reverts to the set before it. The leader changes one
  voter at a time, only once its term's NOOP and any earlier VOTERS entry are
  committed. A leader removed from the voters steps down once that commits. A node
  that is not a voter never stands, with one exception: a node whose own removal is
  its log's last voter change, not known to be committed, may stand, counting the
  new voters' votes only, to commit its removal (a leader that removed itself and
  then lost its lease may hold the only log a new leader could come from). Commit
  and check-quorum count current voters only; learners are replicated to but
  never counted.
- Check-quorum: a leader that has not heard, within ``lease_timeout``, from a
  majority of voters (itself included when a voter), counting vote grants and
  answers of its term, steps down. It is not a read lease: a contact counts from
  when its answer arrived.
- Rejoining (a node restored from a backup: ``murmur node restore``). Its Raft state
  was dropped, so it may lack entries it once acknowledged and votes it once cast;
  counting on it as before could lose a committed entry. Until it has caught up it
  neither votes, nor stands, nor bootstraps: it starts with ``rejoining`` and an
  empty log, and ends it on an AppendEntries it accepts whose leader commit it holds
  and is of the leader's term (the leader has committed in its term, so every entry
  committed before, by any leader, is among those it holds; and since its empty log
  refused the leader's first message, the commit index it caught up to counts
  everything committed on its old acknowledgements). ``Ready.rejoined`` says when
  to persist that. On the leader's side, a refusal whose hint is below the
  follower's match index means the follower lost entries it had acknowledged: the
  match index drops to the hint, so the leader counts only what the follower holds
  and sends it the rest again (or a snapshot).
- Withheld candidacy (``set_candidacy(False)``: the caller's state machine cannot
  apply the log, node/control/consensus/runner.py). The node never stands, and
  steps down if it leads, since a leader acts on its state; it goes on storing and
  acknowledging entries and granting votes, which depend on its log alone, so it
  still counts towards commits and elections. Volatile: a restarted node stands
  again unless told otherwise.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from murmur.node.control.raft.config import ElectionConfig
from murmur.node.control.raft.errors import CompactionError, NotLeaderError, VoterChangeError
from murmur.node.control.raft.log import RaftLog
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


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    """Asking PreVotes: its term and vote are unchanged."""
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What must survive a crash besides the log: the current term and whom we
    voted for in it."""

    term: int = 0
    voted_for: str | None = None


NEW_NODE = PersistentState()
"""The persistent state of a node that never saved one: term 0, no vote."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything a batch of inputs produced, in the order the caller must handle it."""

    hard_state: PersistentState | None
    """Save when not None (it changed since the last ready())."""
    snapshot: Snapshot | None
    """A snapshot received from the leader: save it (it replaces every persisted entry
    up to ``snapshot.last.index``) and restore the state machine from it."""
    truncate_from: int | None
    """Delete persisted entries with index >= this (before appending ``entries``)."""
    entries: tuple[LogEntry, ...]
    """Append to the persisted log."""
    messages: tuple[Outgoing, ...]
    """Send only once everything above is durable."""
    committed: tuple[LogEntry, ...]
    """Newly committed entries, in index order, to apply to the state machine (all
    kinds: the caller skips those that are not COMMAND)."""
    rejoined: bool = False
    """A rejoining node caught up: persist that it votes again, with the entries
    above (before a vote among the messages leaves)."""

    @property
    def empty(self) -> bool:
        return (
            self.hard_state is None
            and self.snapshot is None
            and self.truncate_from is None
            and not self.entries
            and not self.messages
            and not self.committed
            and not self.rejoined
        )


def bootstrap_entry(node_id: str) -> LogEntry:
    """The entry the cluster's first node writes, once, to its empty log, to be its
    lone voter. It has term 0, before any leader's. Nodes that join later start with
    an empty log: they have no voters, never stand, and take the log from a leader
    (as learners) until it makes them voters."""
    return LogEntry(term=0, index=1, kind=EntryKind.VOTERS, voters=frozenset({node_id}))


@dataclass(slots=True)
class _Progress:
    """A leader's view of one follower's log."""

    next_index: int
    """The first index to send it next (past a batch in flight: optimistic)."""
    match_index: int = 0
    """The highest index known to match the leader's log."""
    in_flight_from: int | None = None
    """First index of the batch (or snapshot, up to its last) awaiting an answer."""
    in_flight_until: float = -math.inf
    """When that batch counts as lost and is sent again."""


def _sender(message: Message) -> str:
    match message:
        case RequestVote() | PreVote():
            return message.candidate
        case VoteResponse() | PreVoteResponse():
            return message.voter
        case AppendEntries() | InstallSnapshot():
            return message.leader
        case AppendResponse():
            return message.follower


def _proposed_term_only(message: Message) -> bool:
    """A PreVote's term, and a granted answer's, are proposals, not terms in use."""
    return isinstance(message, PreVote) or (
        isinstance(message, PreVoteResponse) and message.granted
    )


class Raft:
    """One node's side of Raft.

    Args:
        node_id: this node's name.
        config: timings and batch limits.
        rng: the only source of randomness (election timeouts); seed it for
            reproducible runs.
        now: the current time, in seconds, on the clock later calls use.
        hard_state: the term and vote saved before the last crash.
        snapshot: the snapshot saved before the last crash; the caller restored its
            state machine from it. Commit and applied indexes start at its last index.
        entries: the persisted entries after the snapshot, in order.
        rejoining: this node was restored from a backup and has not caught up with
            a leader since (see "Rejoining" above): it neither votes nor stands.

    Raises:
        ElectionSetupError: ``entries`` do not follow ``snapshot`` without a gap.
    """

    def __init__(
        self,
        node_id: str,
        *,
        config: ElectionConfig,
        rng: random.Random,
        now: float,
        hard_state: PersistentState = NEW_NODE,
        snapshot: Snapshot | None = None,
        entries: Sequence[LogEntry] = (),
        rejoining: bool = False,
    ) -> None:
        self._node_id = node_id
        self._rejoining = rejoining
        self._candidacy = True  # set_candidacy
        self._rejoined = False  # rejoining ended since the last ready()
        self._config = config
        self._rng = rng
        self._term = hard_state.term
        self._voted_for = hard_state.voted_for
        self._saved = hard_state
        self._log = RaftLog(snapshot, entries)
        self._voters = self._log.voters
        self._commit = self._applied = self._log.start.index
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        self._now = now
        self._messages: list[Outgoing] = []
        self._grants: dict[str, float] = {}  # candidate only: voter -> grant arrived at
        self._pre_grants: set[str] = set()  # pre-candidate only
        self._leader_heard_at = -math.inf  # last AppendEntries/snapshot taken from a leader
        # Leader only:
        self._heard_at: dict[str, float] = {}  # node -> last answer of this term
        self._progress: dict[str, _Progress] = {}
        self._learners: set[str] = set()
        self._term_start = 0  # index of this term's NOOP
        self._election_at = math.inf
        self._heartbeat_at = math.inf
        self._lease_until = math.inf
        if self._voters == {node_id} and not rejoining:
            self._election_at = now  # a lone voter stands at the first tick
        else:
            self._reset_election_timer(now)

    # --- reading ------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def config(self) -> ElectionConfig:
        return self._config

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def leader(self) -> str | None:
        """The leader of the current term as far as we know (ourselves included)."""
        return self._leader

    @property
    def voters(self) -> frozenset[str]:
        """The voter set in force: that of the log's last VOTERS entry, else the
        snapshot's, else empty (a node that has not joined yet)."""
        return self._voters

    @property
    def rejoining(self) -> bool:
        """Restored from a backup and not caught up with a leader yet: it neither
        votes nor stands."""
        return self._rejoining

    @property
    def candidacy(self) -> bool:
        """Whether this node may stand for leader when it is a voter (see
        :meth:`set_candidacy`)."""
        return self._candidacy

    @property
    def voter_change_pending(self) -> bool:
        """A VOTERS entry is in the log but not known to be committed (until it is,
        ``change_voters`` refuses the next change)."""
        return self._log.voters_index > self._commit

    @property
    def learners(self) -> frozenset[str]:
        """Leader only: the non-voters it replicates to (empty unless leading)."""
        return frozenset(self._learners - self._voters)

    @property
    def last_log(self) -> LogPosition:
        return self._log.last

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def first_index(self) -> int:
        """The first index still in the log (the one after the snapshot)."""
        return self._log.start.index + 1

    def match_index(self, node_id: str) -> int:
        """Leader: the highest index known to be replicated on ``node_id`` (0 if
        unknown). For this node itself, its last index."""
        if node_id == self._node_id:
            return self._log.last_index
        progress = self._progress.get(node_id)
        return progress.match_index if progress is not None else 0

    def last_contact(self, node_id: str) -> float | None:
        """Leader: when an answer of this term last came from ``node_id``."""
        return self._heard_at.get(node_id) if self._role is Role.LEADER else None

    def lease_expires_at(self) -> float | None:
        """When a leader steps down unless it hears from more voters (None unless
        leading). After any call, a leader's lease ends after that call's ``now``."""
        return self._lease_until if self._role is Role.LEADER else None

    def next_deadline(self) -> float:
        """When ``tick`` next has something to do."""
        if self._role is Role.LEADER:
            return min(self._heartbeat_at, self._lease_until)
        return self._election_at

    # --- inputs -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run what is due at ``now``."""
        self._now = now
        if self._role is Role.LEADER:
            if not self._lease_lost(now) and now >= self._heartbeat_at:
                self._heartbeat_round(now)
            return
        if now >= self._election_at:
            if self._config.pre_vote and self._voters != {self._node_id}:
                self._ask_pre_votes(now)
            else:
                self._stand(now)

    def receive(self, message: Message, now: float) -> None:
        """Handle one message."""
        self._now = now
        if self._ignored(message):
            return
        if self._role is Role.LEADER:
            self._lease_lost(now)
        if message.term > self._term and not _proposed_term_only(message):
            self._follow(message.term, now)
        match message:
            case RequestVote():
                self._on_request_vote(message, now)
            case VoteResponse():
                self._on_vote_response(message, now)
            case PreVote():
                self._on_pre_vote(message, now)
            case PreVoteResponse():
                self._on_pre_vote_response(message, now)
            case AppendEntries():
                self._on_append_entries(message, now)
            case InstallSnapshot():
                self._on_install_snapshot(message, now)
            case AppendResponse():
                self._on_append_response(message, now)

    def propose(self, data: bytes, now: float) -> LogPosition:
        """Append a command; it goes out at the next ``ready()``.

        Returns:
            Its position: it is committed once ``ready().committed`` holds an entry
            at that index of that term (another term there means it was lost).

        Raises:
            NotLeaderError: this node does not lead.
        """
        self._require_leader(now)
        return self._append(EntryKind.COMMAND, now, data=data).position

    def change_voters(self, voters: frozenset[str], now: float) -> LogPosition:
        """Append a new voter set, one voter added or removed; it takes effect at once.

        Returns:
            The VOTERS entry's position (the change is done once it commits).

        Raises:
            NotLeaderError: this node does not lead.
            VoterChangeError: not exactly one voter added or removed, no voter left,
                an earlier change is not committed yet, or this leader has not
                committed an entry of its term yet.
        """
        self._require_leader(now)
        changed = voters ^ self._voters
        if len(changed) != 1:
            raise VoterChangeError(
                f"raft: change one voter at a time: {sorted(self._voters)} -> "
                f"{sorted(voters)} changes {sorted(changed)}"
            )
        if not voters:
            raise VoterChangeError("raft: cannot remove the last voter")
        if self._commit < self._term_start:
            raise VoterChangeError(
                f"raft: this leader has not committed an entry of term {self._term} yet "
                "(thesis §4.1); retry once it has"
            )
        if self.voter_change_pending:
            raise VoterChangeError(
                f"raft: the voter change at index {self._log.voters_index} is not committed "
                "yet; wait for it before the next one"
            )
        return self._append(EntryKind.VOTERS, now, voters=voters).position

    def set_candidacy(self, allowed: bool, now: float) -> None:
        """Whether this node may stand for leader. Withheld, it stops leading or
        standing at once and never stands again until allowed; it still votes and
        takes entries (see the module doc)."""
        self._now = now
        if allowed == self._candidacy:
            return
        self._candidacy = allowed
        if not allowed and self._role is not Role.FOLLOWER:
            self._step_down(now)  # leader, candidate or pre-candidate
            return
        self._reset_election_timer(now)

    def add_learner(self, node_id: str) -> None:
        """Leader: replicate to ``node_id`` too, without counting it (volatile: a new
        leader starts with none, so the caller adds them again).

        Raises:
            NotLeaderError: this node does not lead.
        """
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._node_id, self._leader)
        if node_id == self._node_id:
            return
        self._learners.add(node_id)
        self._sync_progress()

    def remove_learner(self, node_id: str) -> None:
        """Leader: stop replicating to ``node_id`` (unless it is a voter).

        Raises:
            NotLeaderError: this node does not lead.
        """
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._node_id, self._leader)
        self._learners.discard(node_id)
        self._sync_progress()

    def compact(self, snapshot: Snapshot) -> None:
        """Drop the entries ``snapshot`` covers; the caller applied them, made
        ``snapshot`` from its state machine and saved it. The leader sends it to
        followers that lag behind the log's start. An older snapshot is ignored.

        Raises:
            CompactionError: the snapshot goes beyond what was applied, does not
                match the log's entry at its last index, or has the wrong voters.
        """
        last = snapshot.last
        if last.index > self._applied:
            raise CompactionError(
                f"raft: snapshot at index {last.index} is beyond the applied index {self._applied}"
            )
        if last.index <= self._log.start.index:
            return
        if self._log.term_at(last.index) != last.term:
            raise CompactionError(
                f"raft: snapshot at {last} does not match the log's entry of term "
                f"{self._log.term_at(last.index)} there"
            )
        voters = self._log.voters_at(last.index)
        if snapshot.voters != voters:
            raise CompactionError(
                f"raft: snapshot at {last} has voters {sorted(snapshot.voters)}, the log "
                f"has {sorted(voters)} there"
            )
        self._log.compact(snapshot)

    def ready(self) -> Ready:
        """Pop everything accumulated since the last call (see :class:`Ready`)."""
        if self._role is Role.LEADER:
            for peer, progress in self._progress.items():
                self._send_append(peer, progress, self._now, heartbeat=False)
        current = PersistentState(self._term, self._voted_for)
        hard_state = None if current == self._saved else current
        self._saved = current
        snapshot, truncate_from, entries = self._log.take_unsaved()
        committed: tuple[LogEntry, ...] = ()
        if self._commit > self._applied:
            committed = tuple(self._log.between(self._applied + 1, self._commit))
            self._applied = self._commit
        messages = tuple(self._messages)
        self._messages.clear()
        rejoined, self._rejoined = self._rejoined, False
        return Ready(hard_state, snapshot, truncate_from, entries, messages, committed, rejoined)

    # --- transitions --------------------------------------------------------------

    def _ignored(self, message: Message) -> bool:
        """Answers count only from our voters, and requests are heard only from
        candidates that may be voters (see :meth:`_electorate`); AppendEntries and
        InstallSnapshot are taken from any leader."""
        if isinstance(message, (VoteResponse, PreVoteResponse)):
            return message.voter not in self._voters
        if isinstance(message, (RequestVote, PreVote)):
            return message.candidate not in self._electorate()
        return _sender(message) == self._node_id

    def _electorate(self) -> frozenset[str]:
        """Every node that is a voter in a voter set that may be in force: the last
        one known committed, and each one after it in the log (uncommitted changes
        may be undone, and a candidate may hold changes we lack). Vote requests from
        anyone else are ignored, so a node whose removal we know is committed cannot
        disrupt the cluster; answering only the latest set's voters could leave no
        node able to win (a removed leader whose removal is not committed needs the
        votes of the new set, whose members may not count it)."""
        electorate = self._log.voters_at(self._commit)
        for index in self._log.voter_changes_after(self._commit):
            electorate |= self._log.voters_at(index)
        return electorate

    def _send(self, destination: str, message: Message) -> None:
        self._messages.append(Outgoing(destination, message))

    def _others(self) -> list[str]:
        return sorted(self._voters - {self._node_id})

    def _may_stand(self) -> bool:
        """A voter may stand; so may a node whose removal is the log's last voter
        change and not known to be committed: it stands to commit its removal (with
        the new voters' votes, not its own), for if it held the only up-to-date log
        nobody else could win. Any other non-voter never stands, nor does a node
        that is rejoining, or whose candidacy is withheld."""
        if self._rejoining or not self._candidacy:
            return False
        if self._node_id in self._voters:
            return True
        changed_at = self._log.voters_index
        return changed_at > self._commit and self._node_id in self._log.voters_at(changed_at - 1)

    def _reset_election_timer(self, now: float) -> None:
        if not self._may_stand():
            self._election_at = math.inf
            return
        config = self._config
        self._election_at = now + self._rng.uniform(
            config.election_timeout_min, config.election_timeout_max
        )

    def _require_leader(self, now: float) -> None:
        self._now = now
        if self._role is Role.LEADER:
            self._lease_lost(now)
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._node_id, self._leader)

    def _follow(self, term: int, now: float) -> None:
        """Adopt a higher ``term`` as a follower with no vote cast in it."""
        was_leader = self._role is Role.LEADER
        self._term = term
        self._voted_for = None
        self._become_follower(None)
        if was_leader:
            self._reset_election_timer(now)

    def _become_follower(self, leader: str | None) -> None:
        self._role = Role.FOLLOWER
        self._leader = leader
        self._grants.clear()
        self._pre_grants.clear()
        self._heard_at.clear()
        self._progress.clear()
        self._learners.clear()
        self._heartbeat_at = math.inf
        self._lease_until = math.inf

    def _step_down(self, now: float) -> None:
        """Stop leading, keeping the term (lost lease, or removed from the voters)."""
        self._become_follower(None)
        self._reset_election_timer(now)

    def _ask_pre_votes(self, now: float) -> None:
        self._role = Role.PRE_CANDIDATE
        self._leader = None
        self._pre_grants.clear()
        self._reset_election_timer(now)
        request = PreVote(self._term + 1, self._node_id, self._log.last)
        for voter in self._others():
            self._send(voter, request)

    def _stand(self, now: float) -> None:
        self._term += 1
        self._voted_for = self._node_id
        self._role = Role.CANDIDATE
        self._leader = None
        self._grants.clear()
        self._pre_grants.clear()
        self._reset_election_timer(now)
        if self._voters == {self._node_id}:
            self._lead(now)
            return
        request = RequestVote(self._term, self._node_id, self._log.last)
        for voter in self._others():
            self._send(voter, request)

    def _lead(self, now: float) -> None:
        self._role = Role.LEADER
        self._leader = self._node_id
        self._election_at = math.inf
        # The grants that elected us are the first contacts of the lease.
        self._heard_at = self._grants
        self._grants = {}
        self._term_start = self._log.last_index + 1
        self._progress = {}
        self._sync_progress(self._term_start)
        self._update_lease(now)
        self._append(EntryKind.NOOP, now)
        self._heartbeat_round(now)

    def _append(
        self,
        kind: EntryKind,
        now: float,
        *,
        data: bytes = b"",
        voters: frozenset[str] = frozenset(),
    ) -> LogEntry:
        entry = LogEntry(self._term, self._log.last_index + 1, kind, data, voters)
        self._log.append(entry)
        if kind is EntryKind.VOTERS:
            self._voters_changed(now)
        self._advance_commit(now)
        return entry

    def _voters_changed(self, now: float) -> None:
        """The log's voter set may have changed (append, truncation, snapshot)."""
        voters = self._log.voters
        if voters == self._voters:
            return
        self._voters = voters
        if self._role is Role.LEADER:
            self._sync_progress()
            self._update_lease(now)
            self._lease_lost(now)  # a new voter it has not heard from lately
        elif not self._may_stand():
            self._election_at = math.inf
        elif self._election_at == math.inf:
            self._reset_election_timer(now)

    def _sync_progress(self, next_index: int | None = None) -> None:
        """Leader: track exactly the voters and learners other than itself. A new
        one is first sent from ``next_index``, by default the last entry, so that
        the next ``ready()`` probes it at once."""
        peers = (self._voters | self._learners) - {self._node_id}
        first = self._log.last_index if next_index is None else next_index
        for peer in sorted(peers - self._progress.keys()):
            self._progress[peer] = _Progress(next_index=max(1, first))
        for peer in self._progress.keys() - peers:
            del self._progress[peer]

    def _heartbeat_round(self, now: float) -> None:
        self._heartbeat_at = now + self._config.heartbeat_interval
        for peer, progress in sorted(self._progress.items()):
            if progress.in_flight_from is not None and progress.in_flight_until <= now:
                progress.next_index = progress.in_flight_from  # lost: send it again
                progress.in_flight_from = None
            self._send_append(peer, progress, now, heartbeat=True)

    def _send_append(self, peer: str, progress: _Progress, now: float, *, heartbeat: bool) -> None:
        """Send ``peer`` what it lacks if nothing is in flight, else (or if it lacks
        nothing) a heartbeat when ``heartbeat``."""
        log = self._log
        if progress.in_flight_from is None:
            if progress.next_index <= log.start.index and log.snapshot is not None:
                progress.in_flight_from = progress.next_index
                progress.in_flight_until = now + self._config.heartbeat_interval
                progress.next_index = log.start.index + 1
                self._send(peer, InstallSnapshot(self._term, self._node_id, log.snapshot))
                return
            if progress.next_index <= log.last_index:
                config = self._config
                first = progress.next_index
                entries = log.batch(
                    first, config.max_entries_per_message, config.max_bytes_per_message
                )
                previous = log.position_at(first - 1) or EMPTY_LOG
                progress.in_flight_from = first
                progress.in_flight_until = now + config.heartbeat_interval
                progress.next_index = entries[-1].index + 1
                message = AppendEntries(self._term, self._node_id, previous, entries, self._commit)
                self._send(peer, message)
                return
        if heartbeat:
            # While a batch is in flight, vouch only for what is known to match.
            index = progress.next_index - 1 if progress.in_flight_from is None else None
            if index is None:
                index = progress.match_index
            previous = log.position_at(index) or EMPTY_LOG
            self._send(peer, AppendEntries(self._term, self._node_id, previous, (), self._commit))

    def _advance_commit(self, now: float) -> None:
        """Leader: commit the highest index a majority of voters holds, if of this term."""
        if self._role is not Role.LEADER or not self._voters:
            return
        matches = sorted((self.match_index(voter) for voter in self._voters), reverse=True)
        majority = matches[self._config.quorum(len(matches)) - 1]
        if majority > self._commit and self._log.term_at(majority) == self._term:
            self._commit = majority
            if self._node_id not in self._voters and self._commit >= self._log.voters_index:
                self._step_down(now)  # our removal is committed

    def _update_lease(self, now: float) -> None:
        """The lease lasts ``lease_timeout`` past the contact that completes the most
        recent majority of voters (a voting leader is always in contact with itself)."""
        needed = self._config.quorum(len(self._voters))
        if self._node_id in self._voters:
            needed -= 1
        if needed <= 0:
            self._lease_until = math.inf
            return
        contacts = sorted(
            (at for node, at in self._heard_at.items() if node in self._voters), reverse=True
        )
        if len(contacts) < needed:
            self._lease_until = now  # a voter it never heard from: it cannot count on them
            return
        self._lease_until = contacts[needed - 1] + self._config.lease_timeout

    def _lease_lost(self, now: float) -> bool:
        if now < self._lease_until:
            return False
        self._step_down(now)
        return True

    def _recognize_leader(self, leader: str, now: float) -> None:
        """A leader of our term spoke: follow it and put off our own election."""
        self._become_follower(leader)
        self._leader_heard_at = now
        self._reset_election_timer(now)

    # --- handlers -----------------------------------------------------------------

    def _on_request_vote(self, request: RequestVote, now: float) -> None:
        granted = (
            not self._rejoining
            and request.term == self._term
            and self._voted_for in (None, request.candidate)
            and request.last_log >= self._log.last
        )
        if granted:
            self._voted_for = request.candidate
            self._reset_election_timer(now)
        self._send(request.candidate, VoteResponse(self._term, self._node_id, granted))

    def _on_vote_response(self, response: VoteResponse, now: float) -> None:
        if self._role is not Role.CANDIDATE or response.term != self._term or not response.granted:
            return
        self._grants[response.voter] = now
        fresh_after = now - self._config.lease_timeout
        self._grants = {v: at for v, at in self._grants.items() if at > fresh_after}
        if self._self_vote() + len(self._grants) >= self._config.quorum(len(self._voters)):
            self._lead(now)

    def _on_pre_vote(self, request: PreVote, now: float) -> None:
        heard_from_leader = (
            self._role is Role.LEADER
            or now - self._leader_heard_at < self._config.election_timeout_min
        )
        granted = (
            not self._rejoining
            and request.term > self._term
            and request.last_log >= self._log.last
            and not heard_from_leader
        )
        answer = PreVoteResponse(request.term if granted else self._term, self._node_id, granted)
        self._send(request.candidate, answer)
        if (
            granted
            and self._role is Role.PRE_CANDIDATE
            and request.term == self._term + 1
            and (request.last_log > self._log.last or request.candidate < self._node_id)
        ):
            # Two voters timed out together and ask each other: both would win
            # their pre-votes, stand and split the vote, costing another election
            # timeout. The one with the better claim (log, then the lower name) goes
            # on; we step back and vote for it. Pre-votes bind nothing, so this
            # only decides who tries first; our timer still runs should it fail.
            self._become_follower(None)
            self._reset_election_timer(now)

    def _on_pre_vote_response(self, response: PreVoteResponse, now: float) -> None:
        if (
            self._role is not Role.PRE_CANDIDATE
            or not response.granted
            or response.term != self._term + 1
        ):
            return
        self._pre_grants.add(response.voter)
        if self._self_vote() + len(self._pre_grants) >= self._config.quorum(len(self._voters)):
            self._stand(now)

    def _self_vote(self) -> int:
        return 1 if self._node_id in self._voters else 0

    def _answer_append(self, leader: str, success: bool, match_index: int) -> None:
        self._send(leader, AppendResponse(self._term, self._node_id, success, match_index))

    def _on_append_entries(self, request: AppendEntries, now: float) -> None:
        if request.term < self._term:
            self._answer_append(request.leader, False, self._log.last_index)
            return
        if self._role is Role.LEADER:
            return  # another leader in our term: impossible if votes were persisted
        self._recognize_leader(request.leader, now)
        previous, entries = request.previous, request.entries
        if previous.index < self._commit:
            # Our log up to the commit index is committed, hence the leader's too.
            entries = entries[self._commit - previous.index :]
            previous = LogPosition(self._log.term_at(self._commit) or 0, self._commit)
        if self._log.term_at(previous.index) != previous.term:
            self._answer_append(request.leader, False, self._log.last_index)
            return
        if entries:
            self._log.merge(entries)
            self._voters_changed(now)
        last_new = previous.index + len(entries)
        self._commit = max(self._commit, min(request.commit, last_new))
        if (
            self._rejoining
            and 0 < request.commit <= last_new
            and self._log.term_at(request.commit) == request.term
        ):
            # We hold everything up to the leader's commit, and it has committed in
            # its term: every entry ever committed is in our log now.
            self._rejoining = False
            self._rejoined = True
            self._reset_election_timer(now)
        self._answer_append(request.leader, True, last_new)

    def _on_install_snapshot(self, request: InstallSnapshot, now: float) -> None:
        if request.term < self._term:
            self._answer_append(request.leader, False, self._log.last_index)
            return
        if self._role is Role.LEADER:
            return
        self._recognize_leader(request.leader, now)
        last = request.snapshot.last
        if last.index > self._commit:
            self._log.install(request.snapshot)
            self._commit = self._applied = last.index
            self._voters_changed(now)
        self._answer_append(request.leader, True, self._commit)

    def _on_append_response(self, response: AppendResponse, now: float) -> None:
        if self._role is not Role.LEADER or response.term != self._term:
            return
        progress = self._progress.get(response.follower)
        if progress is None:
            return
        self._heard_at[response.follower] = now
        if response.follower in self._voters:
            self._update_lease(now)
        if response.success:
            progress.match_index = max(progress.match_index, response.match_index)
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            if progress.in_flight_from is not None and (
                progress.match_index >= progress.next_index - 1
            ):
                progress.in_flight_from = None
            self._advance_commit(now)
            return
        # Refused: its log lacks what we sent after; its last index is the hint.
        if response.match_index < progress.match_index:
            # It holds less than it acknowledged: its disk was replaced (restored from
            # a backup). Count only what it holds, and send it the rest again.
            progress.match_index = response.match_index
        base = (
            progress.in_flight_from if progress.in_flight_from is not None else progress.next_index
        )
        progress.next_index = max(progress.match_index + 1, min(response.match_index + 1, base - 1))
        progress.in_flight_from = None
