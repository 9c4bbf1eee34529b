"""`Election`: Raft leader election with check-quorum, as a pure state machine.

No I/O, no asyncio, no clock: the caller (later the daemon over gRPC, today the
simulation) feeds it time and messages and sends what it returns.

- ``tick(now)`` runs whatever is due: an election timeout (→ PreVotes, or with
  pre-vote off a new term and RequestVotes), a leader's heartbeat round, a
  leader's lease check. ``next_deadline()`` says when to call again.
- ``receive(message, now)`` handles one message.
- ``update_log(position)`` tells the machine where the local log now ends.

Every call returns the messages to send as :class:`Outgoing` (voter id, message).

Persistence contract. :attr:`Election.persistent` (current term and the vote cast
in it) must be on stable storage before any message a call returned is sent: after
each ``tick``/``receive``, if ``persistent`` differs from what was last saved, write
it (SQLite, synchronous=FULL) and only then send. A node that answered "granted"
and then forgot it after a crash could vote again in the same term and let two
leaders be elected. On restart, build the machine with the saved value; everything
else (role, votes received, the known leader, the lease) is volatile and starts
afresh as a follower.

Rules (Raft §5.1, §5.2, §5.4.1; check-quorum, §6.2 of Ongaro's thesis; pre-vote
and leader stickiness, §9.6 and §4.2.3):

- A message with a higher term makes us a follower of that term, without a vote.
- A voter grants at most one vote per term, and only to a candidate whose log is
  at least as up to date as its own (:class:`LogPosition` order). Granting resets
  its election timer.
- A candidate that gathers a majority (itself included) leads, counting only
  grants that arrived within ``lease_timeout``: they are its lease's first
  contacts, so a new leader really holds its lease; a grant delayed past that is
  as good as lost, and the candidate stands again at its next timeout. A lone
  voter stands at its first tick (``next_deadline()`` is the start time) and wins
  at once. A heartbeat of its term makes a candidate a follower.
- A leader sends a heartbeat every ``heartbeat_interval``. It steps down when it
  has not heard, within ``lease_timeout``, from a majority of voters (itself
  included), counting vote grants and heartbeat answers of its term. This is
  check-quorum, the liveness half of a lease: it keeps a leader cut off in a
  minority from believing in itself for long. It is not a read lease: the time a
  contact counts from is when its answer arrived, not when the question left.
- Pre-vote (§9.6, on by default, ``ElectionConfig.pre_vote``): at its election
  timeout a node first becomes a pre-candidate and sends PreVote for its term + 1,
  changing no persistent state; only with a majority of yes (itself included) does
  it stand for real. A voter says yes when the proposed term is above its own, the
  asker's log is at least as up to date as its own, and it has not heard from a
  leader within ``election_timeout_min`` (a leader always says no). A refusal that
  carries a higher term is adopted like any other. Without pre-vote, a voter cut
  off from the leader raises its term on every timeout and deposes the leader
  once on its return.

Voters are a fixed set given at construction; membership changes (adding and
removing voters one at a time) come with the replicated log. Messages from nodes
that are not voters are ignored.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from node.election.config import ElectionConfig
from node.election.errors import ElectionSetupError
from node.election.messages import (
    EMPTY_LOG,
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


def _sender(message: Message) -> str:
    match message:
        case RequestVote() | PreVote():
            return message.candidate
        case VoteResponse() | PreVoteResponse():
            return message.voter
        case Heartbeat():
            return message.leader
        case HeartbeatResponse():
            return message.follower


def _proposed_term_only(message: Message) -> bool:
    """A PreVote's term, and a granted answer's, are proposals, not terms in use."""
    return isinstance(message, PreVote) or (
        isinstance(message, PreVoteResponse) and message.granted
    )


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    """Asking PreVotes: its term and vote are unchanged."""
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What must survive a crash: the current term and whom we voted for in it."""

    term: int = 0
    voted_for: str | None = None


NEW_NODE = PersistentState()
"""The persistent state of a voter that never saved one: term 0, no vote."""


class Election:
    """One voter's side of leader election.

    Args:
        node_id: this node's voter id (its node name).
        voters: every voter's id, this node's included. Fixed for the life of the
            machine (see the module doc).
        config: timings.
        rng: the only source of randomness (election timeouts); seed it for
            reproducible runs.
        now: the current time, in seconds, on the clock later calls use.
        persistent: the term and vote saved before the last crash (see the
            persistence contract in the module doc).
        log: where the local log ends.

    Raises:
        ElectionSetupError: ``voters`` does not contain ``node_id``.
    """

    def __init__(
        self,
        node_id: str,
        voters: Iterable[str],
        *,
        config: ElectionConfig,
        rng: random.Random,
        now: float,
        persistent: PersistentState = NEW_NODE,
        log: LogPosition = EMPTY_LOG,
    ) -> None:
        self.node_id = node_id
        self._voters = frozenset(voters)
        if node_id not in self._voters:
            raise ElectionSetupError(f"election: {node_id!r} is not among the voters")
        self._others = tuple(sorted(self._voters - {node_id}))
        self._quorum = config.quorum(len(self._voters))
        self._config = config
        self._rng = rng
        self._term = persistent.term
        self._voted_for = persistent.voted_for
        self._log = log
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        self._grants: dict[str, float] = {}  # candidate only: voter -> grant arrived at
        self._pre_grants: set[str] = set()  # pre-candidate only
        self._leader_heard_at = -math.inf  # last heartbeat accepted from a leader
        self._heard_at: dict[str, float] = {}  # leader only: voter -> last contact
        self._election_at = math.inf
        self._heartbeat_at = math.inf
        self._lease_until = math.inf
        self._reset_election_timer(now)
        if self._quorum == 1:
            self._election_at = now  # a lone voter stands at the first tick

    # --- reading ------------------------------------------------------------------

    @property
    def config(self) -> ElectionConfig:
        return self._config

    @property
    def voters(self) -> frozenset[str]:
        return self._voters

    @property
    def persistent(self) -> PersistentState:
        """Term and vote to save before sending what the last call returned."""
        return PersistentState(self._term, self._voted_for)

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
    def log(self) -> LogPosition:
        return self._log

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

    def update_log(self, position: LogPosition) -> None:
        """The local log now ends at ``position`` (appended or truncated)."""
        self._log = position

    def tick(self, now: float) -> list[Outgoing]:
        """Run what is due at ``now``."""
        if self._role is Role.LEADER:
            if self._lease_lost(now):
                return []
            if now >= self._heartbeat_at:
                return self._heartbeat_round(now)
            return []
        if now >= self._election_at:
            if self._config.pre_vote and self._quorum > 1:
                return self._ask_pre_votes(now)
            return self._stand(now)
        return []

    def receive(self, message: Message, now: float) -> list[Outgoing]:
        """Handle one message; returns the replies to send."""
        if _sender(message) not in self._voters:
            return []
        if self._role is Role.LEADER:
            self._lease_lost(now)
        if message.term > self._term and not _proposed_term_only(message):
            self._follow(message.term, now)
        match message:
            case RequestVote():
                return self._on_request_vote(message, now)
            case VoteResponse():
                return self._on_vote_response(message, now)
            case PreVote():
                return self._on_pre_vote(message, now)
            case PreVoteResponse():
                return self._on_pre_vote_response(message, now)
            case Heartbeat():
                return self._on_heartbeat(message, now)
            case HeartbeatResponse():
                self._on_heartbeat_response(message, now)
                return []

    # --- transitions --------------------------------------------------------------

    def _reset_election_timer(self, now: float) -> None:
        config = self._config
        self._election_at = now + self._rng.uniform(
            config.election_timeout_min, config.election_timeout_max
        )

    def _follow(self, term: int, now: float) -> None:
        """Adopt a higher ``term`` as a follower with no vote cast in it."""
        was_leader = self._role is Role.LEADER
        self._term = term
        self._voted_for = None
        self._role = Role.FOLLOWER
        self._leader = None
        self._grants.clear()
        self._pre_grants.clear()
        self._heard_at.clear()
        if was_leader:
            self._reset_election_timer(now)

    def _ask_pre_votes(self, now: float) -> list[Outgoing]:
        self._role = Role.PRE_CANDIDATE
        self._leader = None
        self._pre_grants.clear()
        self._reset_election_timer(now)
        request = PreVote(self._term + 1, self.node_id, self._log)
        return [Outgoing(voter, request) for voter in self._others]

    def _stand(self, now: float) -> list[Outgoing]:
        self._term += 1
        self._voted_for = self.node_id
        self._role = Role.CANDIDATE
        self._leader = None
        self._grants.clear()
        self._pre_grants.clear()
        self._reset_election_timer(now)
        if self._quorum == 1:
            return self._lead(now)
        request = RequestVote(self._term, self.node_id, self._log)
        return [Outgoing(voter, request) for voter in self._others]

    def _lead(self, now: float) -> list[Outgoing]:
        self._role = Role.LEADER
        self._leader = self.node_id
        self._election_at = math.inf
        # The grants that elected us are the first contacts of the lease.
        self._heard_at = self._grants
        self._grants = {}
        self._update_lease(now)
        return self._heartbeat_round(now)

    def _heartbeat_round(self, now: float) -> list[Outgoing]:
        self._heartbeat_at = now + self._config.heartbeat_interval
        heartbeat = Heartbeat(self._term, self.node_id)
        return [Outgoing(voter, heartbeat) for voter in self._others]

    def _update_lease(self, now: float) -> None:
        """The lease lasts ``lease_timeout`` past the contact that completes the
        most recent majority (we are always in contact with ourselves)."""
        needed = self._quorum - 1
        if needed <= 0:
            self._lease_until = math.inf
            return
        contacts = sorted(self._heard_at.values(), reverse=True)
        if len(contacts) < needed:
            self._lease_until = now  # cannot happen after an election; be safe
            return
        self._lease_until = contacts[needed - 1] + self._config.lease_timeout

    def _lease_lost(self, now: float) -> bool:
        if now < self._lease_until:
            return False
        self._role = Role.FOLLOWER
        self._leader = None
        self._heard_at.clear()
        self._heartbeat_at = math.inf
        self._lease_until = math.inf
        self._reset_election_timer(now)
        return True

    # --- handlers -----------------------------------------------------------------

    def _on_request_vote(self, request: RequestVote, now: float) -> list[Outgoing]:
        granted = (
            request.term == self._term
            and self._voted_for in (None, request.candidate)
            and request.last_log >= self._log
        )
        if granted:
            self._voted_for = request.candidate
            self._reset_election_timer(now)
        answer = VoteResponse(self._term, self.node_id, granted)
        return [Outgoing(request.candidate, answer)]

    def _on_vote_response(self, response: VoteResponse, now: float) -> list[Outgoing]:
        if self._role is not Role.CANDIDATE or response.term != self._term or not response.granted:
            return []
        self._grants[response.voter] = now
        fresh_after = now - self._config.lease_timeout
        self._grants = {v: at for v, at in self._grants.items() if at > fresh_after}
        if 1 + len(self._grants) >= self._quorum:
            return self._lead(now)
        return []

    def _on_pre_vote(self, request: PreVote, now: float) -> list[Outgoing]:
        heard_from_leader = (
            self._role is Role.LEADER
            or now - self._leader_heard_at < self._config.election_timeout_min
        )
        granted = (
            request.term > self._term and request.last_log >= self._log and not heard_from_leader
        )
        answer = PreVoteResponse(request.term if granted else self._term, self.node_id, granted)
        return [Outgoing(request.candidate, answer)]

    def _on_pre_vote_response(self, response: PreVoteResponse, now: float) -> list[Outgoing]:
        if (
            self._role is not Role.PRE_CANDIDATE
            or not response.granted
            or response.term != self._term + 1
        ):
            return []
        self._pre_grants.add(response.voter)
        if 1 + len(self._pre_grants) >= self._quorum:
            return self._stand(now)
        return []

    def _on_heartbeat(self, heartbeat: Heartbeat, now: float) -> list[Outgoing]:
        if heartbeat.term < self._term:
            stale = HeartbeatResponse(self._term, self.node_id, accepted=False)
            return [Outgoing(heartbeat.leader, stale)]
        if self._role is Role.LEADER:
            return []  # another leader in our term: impossible if votes were persisted
        self._role = Role.FOLLOWER
        self._grants.clear()
        self._pre_grants.clear()
        self._leader = heartbeat.leader
        self._leader_heard_at = now
        self._reset_election_timer(now)
        answer = HeartbeatResponse(self._term, self.node_id, accepted=True)
        return [Outgoing(heartbeat.leader, answer)]

    def _on_heartbeat_response(self, response: HeartbeatResponse, now: float) -> None:
        if self._role is not Role.LEADER or response.term != self._term or not response.accepted:
            return
        self._heard_at[response.follower] = now
        self._update_lease(now)
