"""The voter-set policy: the one membership change the Raft leader should make next.

A pure function of a snapshot, like the scheduler: no I/O, no asyncio, no clock.
The leader calls :func:`next_voter_step` every second or so with its Raft view of
the voter set (:class:`VoterSetView`), gossip's view of the members
(:class:`Liveness` by name) and the time, applies the step it gets, if any, and
calls again later. Gossip only discovers nodes; which of them vote is decided here,
so there is no ``bootstrap_expect`` to get wrong: the first node leads itself alone,
and the voter set follows the cluster as it grows and loses nodes.

Terms. A node is *healthy* when gossip has seen it alive (suspect counts as alive)
for at least ``stabilization_seconds``; a node that just (re)joined must prove
itself first, so a flapping machine never becomes a voter. The leader is always
alive and healthy: it is running this code. A voter is *dead* when gossip has seen
it dead or left for at least ``stabilization_seconds``; one dead for less may still
be a blip and is left alone. A voter missing from the members mapping is *gone*
(removed by an admin, ``node remove``, or forgotten by gossip) and is dead since
forever. The *quorum* of ``n`` voters is ``n // 2 + 1``; *tolerance* is how many
more alive voters may fail before the quorum is lost: alive voters - quorum.

Rules, in the order they are tried (the first that applies is the step):

1. While a voter change is uncommitted, nothing: Raft single-server changes are
   safe only one at a time.
2. A learner that died or is no longer a member is dropped (``RemoveLearner``).
3. Voters above ``max_voters`` (the limit was lowered) are removed, dead first.
4. A dead voter is removed when that costs no tolerance the cluster will want:
   a *gone* voter at once (nobody will bring it back); otherwise when the count
   is even (4 with 1 dead → 3 all alive raises tolerance from 0 to 1, and a set of
   3 survives as many failures as one of 4), when at least two are dead in an odd
   set (5 with 2 dead → 4 → 3 all alive raises it from 0 to 1), or when the set is
   full at ``max_voters`` and a caught-up learner waits to take the seat (remove
   then promote; add-then-remove would exceed the limit for a moment). A single
   dead voter in an odd set is otherwise kept: removing it (3 → 2, 5 → 4) gains
   nothing now and loses a failure's worth of margin if it comes back.
5. A learner is promoted once it is caught up (within ``catch_up_lag`` entries of
   the commit index) and healthy, when the set is below its target size or a dead
   voter awaits replacement. Replacement is add-then-remove: the promotion makes
   the count even and rule 4 then removes the dead voter, so tolerance never drops
   on the way.
6. A learner nobody needs any more (the spare that would have grown the set died)
   is dropped, rather than replicated to for nothing.
7. With no learner in flight, a healthy non-voter becomes a learner when the set
   is below its target size or a dead voter awaits replacement; the longest-alive
   first (the most stable), then by name, so the choice is deterministic.

The *target size* is the largest odd number not above ``max_voters`` nor the
number of healthy nodes, counting every alive voter (a voter that rejoined a moment
ago still votes): 1, 3 or 5 with the defaults. Even sizes add a node that can fail
without adding tolerance, so the set only starts growing once a full odd step is
reachable; 1 → 3 passes through 2 voters for one change. A live voter is never
demoted because the cluster shrank below its size: it still helps the quorum.

Whatever the rule, a voter change is proposed only when the alive members of the
new set reach its quorum (Raft could not commit it otherwise), and the leader is
never removed: an admin removing the leader's node must have leadership moved
first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias


class VoterPolicyError(ValueError):
    """A :class:`VoterPolicyConfig` field is out of range, or a
    :class:`VoterSetView` contradicts itself; the message says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VoterPolicyConfig:
    """How the leader grows, shrinks and repairs the voter set."""

    stabilization_seconds: float = 10.0
    """How long a node must have been alive before it may become a voter, and a
    voter dead before it is replaced. Long enough to ride out a restart or a
    suspicion that is refuted; short enough that a new cluster reaches three voters
    within seconds. Consul's and Nomad's autopilot use 10 s
    (``server_stabilization_time``)."""

    max_voters: int = 5
    """Upper bound of the voter set; odd, since an even count tolerates no more
    failures than the odd count below it. Five tolerates two failures; more voters
    slow every commit (each waits for a majority) for little gain in a lab."""

    catch_up_lag: int = 250
    """A learner whose log is within this many entries of the commit index counts
    as caught up and may be promoted. Promoting one that is far behind would leave
    the new majority waiting on it to fetch the backlog before anything commits.
    Autopilot's ``max_trailing_logs`` default."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stabilization_seconds) and self.stabilization_seconds >= 0):
            raise VoterPolicyError(
                "voter policy: stabilization_seconds must be finite and >= 0, "
                f"got {self.stabilization_seconds}"
            )
        if self.max_voters < 1 or self.max_voters % 2 == 0:
            raise VoterPolicyError(
                f"voter policy: max_voters must be odd and >= 1, got {self.max_voters}; "
                "an even count tolerates no more failures than the odd one below it"
            )
        if self.catch_up_lag < 0:
            raise VoterPolicyError(
                f"voter policy: catch_up_lag must be >= 0, got {self.catch_up_lag}"
            )


@dataclass(frozen=True, slots=True)
class Liveness:
    """One member as gossip sees it."""

    alive: bool
    """Gossip's state is alive or suspect (a suspect may well be fine); False for
    dead or left."""

    since: float
    """When it entered that state: alive since, or dead (or left) since. Same clock
    as ``now``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VoterSetView:
    """The leader's Raft view of the voter set, taken just before the call."""

    leader: str
    """This node, the leader; always one of ``voters``."""

    voters: frozenset[str]
    """The latest voter set in the log, committed or not."""

    learners: frozenset[str] = frozenset()
    """Non-voters the leader replicates to; disjoint from ``voters``."""

    change_pending: bool = False
    """A voter change is in the log but not yet committed."""

    match_index: Mapping[str, int] = field(default_factory=dict)
    """Highest log index known to be replicated on each follower and learner; a
    name missing here has nothing yet (0)."""

    commit_index: int = 0
    """The leader's commit index."""

    def __post_init__(self) -> None:
        if self.leader not in self.voters:
            raise VoterPolicyError(
                f"voter set view: leader {self.leader!r} is not among the voters "
                f"{sorted(self.voters)}"
            )
        if both := self.voters & self.learners:
            raise VoterPolicyError(f"voter set view: {sorted(both)} are both voters and learners")


class RemovalReason(StrEnum):
    """Why a voter or learner is taken out; for logs and the event log."""

    DEAD = "dead"
    """Gossip has seen it dead or left for at least the stabilization time (for a
    learner: at all)."""

    GONE = "gone"
    """Not among the members any more: removed by an admin, or forgotten."""

    OVER_LIMIT = "over_limit"
    """More voters than ``max_voters``, which was lowered."""

    NOT_NEEDED = "not_needed"
    """A learner no longer needed to grow the set or to replace a voter."""


@dataclass(frozen=True, slots=True)
class AddLearner:
    """Start replicating to this node as a non-voter (``add_learner``)."""

    name: str


@dataclass(frozen=True, slots=True)
class PromoteLearner:
    """Make this caught-up learner a voter (``change_voters(voters | {name})``)."""

    name: str


@dataclass(frozen=True, slots=True)
class RemoveVoter:
    """Take this voter out (``change_voters(voters - {name})``)."""

    name: str
    reason: RemovalReason


@dataclass(frozen=True, slots=True)
class RemoveLearner:
    """Stop replicating to this learner (``remove_learner``)."""

    name: str
    reason: RemovalReason


VoterStep: TypeAlias = AddLearner | PromoteLearner | RemoveVoter | RemoveLearner

_GONE = Liveness(alive=False, since=-math.inf)


def quorum(voters: int) -> int:
    """Votes needed among ``voters``: a strict majority."""
    return voters // 2 + 1


def target_voter_count(healthy_nodes: int, *, max_voters: int) -> int:
    """The voter set size to aim for: the largest odd number not above
    ``max_voters`` nor ``healthy_nodes``, and at least 1 (the leader alone)."""
    cap = min(healthy_nodes, max_voters)
    return max(1, cap if cap % 2 == 1 else cap - 1)


def next_voter_step(
    view: VoterSetView,
    members: Mapping[str, Liveness],
    *,
    now: float,
    config: VoterPolicyConfig,
) -> VoterStep | None:
    """The single change the leader should make to its voters and learners now.

    Args:
        view: The leader's Raft view of voters, learners and replication progress.
        members: Gossip's view of every member the cluster still counts, by name.
            The caller leaves out nodes an admin removed; a voter missing here is
            removed as soon as the quorum allows. The leader's own entry, if any,
            is ignored: the leader is alive.
        now: The current time, on the clock of ``Liveness.since``.
        config: Stabilization time, size limit and catch-up threshold.

    Returns:
        The step to apply, or None when the set is as it should be for now (or a
        voter change is still uncommitted). The same arguments always give the
        same answer.
    """
    if view.change_pending:
        return None

    def liveness(name: str) -> Liveness:
        if name == view.leader:
            return Liveness(alive=True, since=-math.inf)
        return members.get(name, _GONE)

    def healthy(name: str) -> bool:
        state = liveness(name)
        return state.alive and now - state.since >= config.stabilization_seconds

    def longest_in_state(name: str) -> tuple[float, str]:
        return (liveness(name).since, name)

    for name in sorted(view.learners):
        if name not in members:
            return RemoveLearner(name, RemovalReason.GONE)
        if not members[name].alive:
            return RemoveLearner(name, RemovalReason.DEAD)

    voters = view.voters
    size = len(voters)
    alive_voters = sum(1 for name in voters if liveness(name).alive)
    dead_voters = sorted(
        (
            name
            for name in voters
            if not liveness(name).alive
            and now - liveness(name).since >= config.stabilization_seconds
        ),
        key=longest_in_state,
    )
    healthy_non_voters = [name for name in members if name not in voters and healthy(name)]
    target = target_voter_count(
        alive_voters + len(healthy_non_voters), max_voters=config.max_voters
    )
    ready_learners = [
        name
        for name in sorted(view.learners)
        if healthy(name)
        and view.match_index.get(name, 0) >= view.commit_index - config.catch_up_lag
    ]

    def removal(name: str) -> RemoveVoter | None:
        """Remove ``name`` if the alive members of the rest still make a quorum."""
        remaining_alive = alive_voters - (1 if liveness(name).alive else 0)
        if name == view.leader or remaining_alive < quorum(size - 1):
            return None
        if name not in members:
            return RemoveVoter(name, RemovalReason.GONE)
        if liveness(name).alive:
            return RemoveVoter(name, RemovalReason.OVER_LIMIT)
        return RemoveVoter(name, RemovalReason.DEAD)

    if size > config.max_voters:
        # Dead ones first, longest dead first; then the live ones that joined last,
        # keeping the longest-stable voters.
        def over_limit_order(name: str) -> tuple[bool, float, str]:
            state = liveness(name)
            return (state.alive, -state.since if state.alive else state.since, name)

        for name in sorted(voters, key=over_limit_order):
            if step := removal(name):
                return step

    gone_voters = [name for name in dead_voters if name not in members]
    dead_voter_may_go = bool(gone_voters) or (
        bool(dead_voters)
        and (
            size % 2 == 0
            or len(dead_voters) >= 2
            or (size >= config.max_voters and bool(ready_learners))
        )
    )
    # Gone voters first, then the longest dead; all dead voters weigh the same
    # for the quorum, so if this one cannot go, none can.
    if dead_voter_may_go and (step := removal((gone_voters or dead_voters)[0])):
        return step

    learner_needed = size < target or bool(dead_voters)
    if not learner_needed:
        if view.learners:
            return RemoveLearner(min(view.learners), RemovalReason.NOT_NEEDED)
        return None
    if ready_learners and size < config.max_voters and alive_voters + 1 >= quorum(size + 1):
        return PromoteLearner(ready_learners[0])
    if not view.learners:
        spares = sorted(healthy_non_voters, key=longest_in_state)
        if spares:
            return AddLearner(spares[0])
    return None
