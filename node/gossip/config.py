"""Every timing and limit of gossip membership, in one frozen dataclass.

The defaults are hashicorp/memberlist's ``DefaultLANConfig`` (the anchor in
``docs``: probe 1 s, timeout 500 ms, 3 indirect probes, gossip every 200 ms to 3
nodes, suspicion multiplier 4, retransmit multiplier 4, push-pull every 30 s),
with Lifeguard on, and a shorter *confirmed* suspicion (below). The formulas that
turn them into timeouts live here too, next to the fields they read, so there is
one place to look:

- node scale: ``scale = max(1, log10(max(1, n)))`` (memberlist floors it at 1);
- suspicion timeout, upper bound (nobody confirms):
  ``max = suspicion_max_timeout_mult * suspicion_mult * scale * probe_interval``,
  memberlist's;
- lower bound (every expected confirmation in):
  ``min = suspicion_min_mult * scale * probe_interval`` (memberlist's is
  ``suspicion_mult * scale * probe_interval``: set ``suspicion_min_mult`` to
  ``suspicion_mult`` to get it back);
- Lifeguard: a suspicion starts at ``max`` and shrinks towards ``min`` as ``c``
  independent confirmations arrive, ``k = suspicion_mult - 2`` expected (fewer in
  a cluster too small for ``k``: see :meth:`GossipConfig.expected_confirmations`):
  ``timeout = max(min, max - (max - min) * log(c + 1) / log(k + 1))``
  (see :mod:`murmur.node.gossip.suspicion`);
- confirmation probes: a node that hears of a new suspicion probes the suspect
  itself with probability ``min(1, confirmation_probes / (n - 2))``, so that the
  ``k`` confirmations come within one probe interval instead of whenever other
  nodes' round-robin reaches the suspect;
- retransmit limit of one update: ``retransmit_mult * ceil(log10(n + 1))``;
- push-pull interval: ``push_pull_interval`` up to 32 nodes, then multiplied by
  ``ceil(log2(n) - log2(32)) + 1`` so the total anti-entropy traffic stays flat;
- Lifeguard local health: probe interval and probe timeout are multiplied by
  ``score + 1`` with ``0 <= score < awareness_max_multiplier``.

``n`` is the number of members this node believes alive or suspect, itself
included.

Why the lower bound can be short: memberlist's 4-6 s minimum is there so that a
live member accused by a slow or cut-off peer has time to refute. Here the
minimum applies only once ``k`` other members probed the suspect themselves
(direct and indirect) and got no answer either; a member that answers any of them
keeps the long upper bound, and a member that cannot answer anyone for that long
is indistinguishable from a failed one (a ``kill -STOP``, a hung host), so it is
declared dead and comes back by refuting as soon as it runs again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from murmur.node.gossip.errors import GossipConfigError

_PUSH_PULL_SCALE_THRESHOLD = 32


def _node_scale(n: int) -> float:
    """memberlist's node scale: ``max(1, log10(n))``."""
    return max(1.0, math.log10(max(1, n)))


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipConfig:
    """Timings (seconds) and limits of SWIM with Lifeguard."""

    probe_interval: float = 1.0
    """Time between two failure-detection probes started by this node."""

    probe_timeout: float = 0.5
    """How long a direct ping waits for its ack before asking others to probe
    indirectly. Must be well above the network's round-trip time and below
    ``probe_interval``."""

    indirect_checks: int = 3
    """Peers asked to ping a target on our behalf when the direct ping failed."""

    gossip_interval: float = 0.2
    """Time between two gossip rounds (only run when there is news to send)."""

    gossip_nodes: int = 3
    """Random peers a gossip round sends to."""

    gossip_to_the_dead_time: float = 30.0
    """How long a node declared dead still receives our gossip, so that a live node
    declared dead by mistake hears it and refutes."""

    suspicion_mult: int = 4
    """Scales the suspicion timeout's upper bound (see the module's formulas).
    Also sets the Lifeguard confirmations expected: ``suspicion_mult - 2``."""

    suspicion_max_timeout_mult: int = 6
    """Upper bound of a suspicion timeout, as a multiple of memberlist's lower
    bound (``suspicion_mult * scale * probe_interval``); a suspicion nobody
    confirms waits this long."""

    suspicion_min_mult: float = 0.5
    """Lower bound of a suspicion timeout, reached once the expected confirmations
    are in, in probe intervals times the node scale: 0.6 s up to 10 members, 0.9 s
    at 32, 1.2 s at 100. memberlist uses ``suspicion_mult`` (4) here; the
    confirmations (``confirmation_probes``) are what make a short one safe. In
    practice a confirmed suspicion takes a probe interval, the time the confirming
    probes need."""

    confirmation_probes: int = 8
    """How many members, in expectation, probe a suspect as soon as they hear of
    its suspicion (direct ping carrying the suspicion, then ``indirect_checks``
    relays; each answers the suspicion only with its own failed probe, which is an
    independent confirmation). Each node that hears of a new suspicion raised by
    another does so with probability ``min(1, confirmation_probes / (n - 2))``.
    Without them, confirmations come only as other nodes' round-robin reaches the
    suspect. Zero turns them off. Not in memberlist."""

    retransmit_mult: int = 4
    """Scales how many times each update is retransmitted (see the formulas)."""

    push_pull_interval: float = 30.0
    """Time between two full-state exchanges (anti-entropy) with a random peer.
    Zero turns them off (join still uses one)."""

    awareness_max_multiplier: int = 8
    """Lifeguard local health score ceiling: the score runs ``0 .. this - 1`` and
    probe interval and timeout are multiplied by ``score + 1``."""

    dead_node_reclaim: float = 30.0
    """How long a dead or left member stays as a tombstone before it is forgotten.
    While it stays, an Alive with an incarnation not above the tombstone's cannot
    bring it back."""

    reconnect_interval: float = 30.0
    """Time between two attempts to reach one random member declared dead, so that
    two sides of a healed partition find each other again. Zero turns it off."""

    reconnect_timeout: float = 24 * 3600.0
    """How long a member declared dead (not one that left) is tried by reconnect."""

    join_retry_interval: float = 1.0
    """Time between two join attempts while no seed has answered."""

    max_piggyback_bytes: int = 1400
    """Byte budget for the updates one message carries (encoded size)."""

    max_piggyback_updates: int = 64
    """Count budget for the updates one message carries."""

    loop_lag_threshold: float = 0.25
    """An event-loop lag report at least this long lowers our own health score
    (Lifeguard): a node that cannot run on time should not accuse others."""

    eager_push: bool = True
    """Forward news to ``gossip_nodes`` peers as soon as it arrives instead of at
    the next gossip round. Not in memberlist: it spends the same retransmit budget,
    earlier, and cuts the time a join takes to reach everyone by about 10x (half a
    gossip interval per hop becomes one network delay per hop)."""

    suspicion_check_lead: float = 1.0
    """Seconds before a suspicion could expire (its minimum timeout) and before it
    will expire (its current deadline) at which this node, if it still suspects,
    pings the member itself, carrying the suspicion. A live member answers with its
    current Alive, so a node that missed the member's refutation (an epidemic
    leaves a few such nodes, ``e**-retransmits`` each) does not declare a live
    member dead; a dead member's host refuses, which shortens the wait of a node
    that missed the death. Zero turns it off. Not in memberlist; it costs at most
    two pings per suspecting node per suspicion."""

    refused_suspicion_timeout: float = 1.0
    """How long a member stays suspect once the transport reports that its address
    refused a connection (:meth:`Membership.report_refused`): a host that answers
    "nobody listens here" has lost the process (killed, crashed, exited), which a
    CPU stall or a slow network never looks like, so there is no need to wait out
    the long suspicion that protects stalled nodes. The member can still refute in
    that time (a quick restart). Zero ignores refusals. Not in memberlist."""

    quiet_metadata: bool = True
    """Metadata-only news (a member's newer blob at the same incarnation: its load, its
    datasets) rides only on probe traffic (pings, acks, indirect probes), never in
    gossip rounds or eager pushes, and push-pull repairs what it misses. It then
    costs bytes, not messages: every blob change otherwise keeps every member
    gossiping for a while, which over gRPC (a fraction of a millisecond of CPU per
    message) dominates the cost of a large cluster. Changes a node marks urgent (a
    drain), joins, suspicions, deaths and refutations still go out at once. Not in
    memberlist, whose UDP messages cost microseconds."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float) and value < 0:
                raise GossipConfigError(f"gossip config: {field.name} must be >= 0, got {value}")
        positive = (
            "probe_interval",
            "probe_timeout",
            "gossip_interval",
            "join_retry_interval",
            "max_piggyback_bytes",
            "max_piggyback_updates",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise GossipConfigError(f"gossip config: {name} must be > 0")
        at_least_one = (
            "gossip_nodes",
            "suspicion_mult",
            "suspicion_max_timeout_mult",
            "retransmit_mult",
            "awareness_max_multiplier",
        )
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise GossipConfigError(f"gossip config: {name} must be >= 1")
        if self.suspicion_min_mult <= 0:
            raise GossipConfigError("gossip config: suspicion_min_mult must be > 0")
        if self.probe_timeout >= self.probe_interval:
            raise GossipConfigError(
                "gossip config: probe_timeout must be shorter than probe_interval "
                f"({self.probe_timeout} >= {self.probe_interval})"
            )

    def suspicion_min_timeout(self, n: int) -> float:
        """Lower bound of a suspicion timeout in a cluster of ``n`` members: the wait
        once every expected confirmation is in."""
        return self.suspicion_min_mult * _node_scale(n) * self.probe_interval

    def suspicion_max_timeout(self, n: int) -> float:
        """Upper bound of a suspicion timeout: the wait when nobody confirms."""
        return (
            self.suspicion_max_timeout_mult
            * self.suspicion_mult
            * _node_scale(n)
            * self.probe_interval
        )

    def confirmation_probe_chance(self, n: int) -> float:
        """Probability that this node probes a member another node suspects, in a
        cluster of ``n`` (``n - 2`` members besides us and the suspect can)."""
        others = n - 2
        if not self.confirmation_probes or others < 1:
            return 0.0
        return min(1.0, self.confirmation_probes / others)

    def expected_confirmations(self, n: int) -> int:
        """Lifeguard ``k``: independent confirmations that shrink a suspicion to its
        minimum, ``suspicion_mult - 2``. In a cluster too small to provide them
        (``n - 2 < k``: the suspect and the first accuser excluded), every other
        member when confirmation probes are on (each of them probes the suspect),
        and none otherwise (memberlist: they might never come)."""
        k = max(0, self.suspicion_mult - 2)
        others = max(0, n - 2)
        if others >= k:
            return k
        return others if self.confirmation_probes else 0

    def retransmit_limit(self, n: int) -> int:
        """How many times one update is sent before it is dropped from the queue."""
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def scaled_push_pull_interval(self, n: int) -> float:
        """Push-pull interval, stretched above 32 members to keep total traffic flat."""
        if n <= _PUSH_PULL_SCALE_THRESHOLD:
            return self.push_pull_interval
        multiplier = math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1
        return multiplier * self.push_pull_interval
