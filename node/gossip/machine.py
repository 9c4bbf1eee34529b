"""`Membership`: SWIM with Lifeguard as a pure, deterministic state machine.

No I/O, no asyncio, no clock: the caller (the daemon over gRPC, or the simulation)
feeds it time and messages and sends what it returns.

- ``tick(now)`` runs whatever is due: a probe (ping → after ``probe_timeout``,
  ping-reqs through ``indirect_checks`` peers → at the end of the probe interval,
  suspicion), confirmation probes of members others suspect, suspicion timeouts
  (→ dead), a gossip round, a push-pull exchange, a reconnect attempt, tombstone
  expiry. ``next_deadline()`` says when to call again.
- ``receive(message, sender_address, now)`` handles one message.
- ``join``, ``leave``, ``update_local_meta`` are the local node's own acts;
  ``report_loop_lag`` and ``report_refused`` are what the daemon and the transport
  observe (our event loop ran late; a peer's address refused a connection).

Every call returns the messages to send as :class:`Outgoing` (address, message).

Rules, following memberlist (state.go) and the Lifeguard paper:

- Only a member raises its own incarnation. Told it is suspected, dead or left
  (at an incarnation not below its own), it refutes with ``accused + 1``; told of
  an Alive of itself that is not its own, likewise.
- At equal incarnation suspect beats alive and dead/left beat suspect, so an Alive
  must carry a higher incarnation to clear a suspicion or resurrect a tombstone.
- A suspicion we raise is sent to the suspect first ("buddy system"), and pings to
  a suspect carry it, so a live but slow member refutes quickly.
- Suspicion timers shrink with independent confirmations (:mod:`.suspicion`).
  A node that hears of a suspicion raised by another probes the suspect itself
  at once (``confirmation_probes``): its failure is a confirmation, so a member
  nobody can reach is declared dead about one probe interval after the first
  suspicion, while one that answers anybody keeps the long timeout and refutes.
- Local health (:mod:`.awareness`) stretches our own probe timings, and a node
  that finds itself late (a tick long after a deadline: it was stalled) neither
  suspects on a probe that ran out meanwhile nor declares a suspicion dead before
  it has read what waited for it: its own lateness is no news about others.
- Push-pull state that says a member is dead becomes only a suspicion here:
  we let our own timer decide.

Restarts: a restarted node (same name, new process) need not remember its last
incarnation. It joins at whatever incarnation it was given (0 is fine); the seed's
push-pull answer carries the previous life's record (alive, suspect, dead or left),
which the node treats as an accusation about itself and refutes with a higher
incarnation, carrying its new address and metadata. A caller that can may pass a
wall-clock-derived ``incarnation`` (e.g. ``int(time.time())``) to skip that round.
The machine retries the join every ``join_retry_interval`` until a seed answers.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from murmur.node.gossip.awareness import Awareness
from murmur.node.gossip.broadcasts import BroadcastQueue
from murmur.node.gossip.codec import update_size
from murmur.node.gossip.config import GossipConfig
from murmur.node.gossip.events import EventKind, MembershipEvent
from murmur.node.gossip.member import Member, MemberState
from murmur.node.gossip.messages import (
    Ack,
    Alive,
    Dead,
    FullState,
    Gossip,
    Leave,
    Message,
    Nack,
    Outgoing,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
    Update,
)
from murmur.node.gossip.peers import PeerSet, ProbeRing
from murmur.node.gossip.pushpull import digest_entry, full_state, plan_response
from murmur.node.gossip.suspicion import Suspicion

_RELAY_NACK_FRACTION = 0.8
"""A relay nacks after this share of probe_timeout, so that the nack reaches the
prober before its probe interval ends (Lifeguard counts missing nacks against the
prober's own health)."""

_MAX_QUEUED_EVENTS = 65536

_DOWN = (MemberState.DEAD, MemberState.LEFT)


@dataclass(slots=True)
class _Probe:
    """The probe in flight: one per node at a time, as in SWIM."""

    seq: int
    target: str
    target_address: str
    incarnation: int
    """The target's incarnation when the ping went out."""
    direct_deadline: float
    deadline: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    """A ping we send on behalf of another node's PingReq."""

    requester_address: str
    requester_seq: int
    nack_at: float


class Membership:
    """One node's view of the cluster and the protocol that keeps it current.

    Args:
        name: this node's unique name (the certificate's node name).
        address: where peers reach this node's gossip endpoint.
        config: timings and limits.
        rng: the only source of randomness; seed it for reproducible runs.
        now: the current time, in seconds, on the clock later calls use.
        meta: this node's metadata blob; ``meta_version`` its version.
        incarnation: where to start this node's incarnation (see the module doc).
        initial_members: peers to start from as if learned by gossip, without
            announcing them (a warm start; simulations begin converged with it).
        on_event: called with each membership change; without it, changes queue up
            (the newest 65,536) for :meth:`drain_events`.
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        config: GossipConfig,
        rng: random.Random,
        now: float,
        meta: bytes = b"",
        meta_version: int = 0,
        incarnation: int = 0,
        initial_members: Iterable[Member] = (),
        on_event: Callable[[MembershipEvent], None] | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self._config = config
        self._rng = rng
        self._on_event = on_event
        self._events: deque[MembershipEvent] = deque(maxlen=_MAX_QUEUED_EVENTS)
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._broadcasts: BroadcastQueue[Update] = BroadcastQueue()
        self._quiet: BroadcastQueue[Update] = BroadcastQueue()
        """Metadata-only news: piggybacked on probe traffic only (``quiet_metadata``)."""
        self._fresh_news = False
        self._members: dict[str, Member] = {}
        self._names_by_address: dict[str, str] = {}
        self._live = PeerSet()  # alive or suspect, self excluded
        self._alive = PeerSet()  # alive, self excluded: relays and push-pull partners
        self._ring = ProbeRing()
        self._suspicions: dict[str, Suspicion] = {}
        self._tombstones: dict[str, float] = {}  # name -> forget at
        self._failed: dict[str, tuple[str, float]] = {}  # dead name -> (address, give up at)
        self._relays: dict[int, _Relay] = {}
        self._probe: _Probe | None = None
        self._confirming: dict[str, _Probe] = {}
        """Confirmation probes in flight, by suspect (``confirmation_probes``)."""
        self._to_confirm: dict[str, tuple[int, float]] = {}
        """Suspects to probe at the next tick: name -> (incarnation, heard at)."""
        self._seq = rng.randrange(1 << 32)
        self._leaving = False
        self._sender_is_behind = False
        self._news_for_sender: list[Update] = []
        """Deaths the sender of the message being handled accused as merely suspect."""
        self._joined = False
        self._join_seeds: tuple[str, ...] = ()
        self._next_join_at = math.inf
        self._due_at = now
        """When the last tick said the next one was due: a tick much later than that
        means this node was stalled (see :meth:`tick`)."""

        self._members[name] = Member(
            name=name,
            address=address,
            incarnation=incarnation,
            state=MemberState.ALIVE,
            state_changed_at=now,
            meta=meta,
            meta_version=meta_version,
            meta_incarnation=incarnation,
        )
        for member in initial_members:
            if member.name != name:
                self._put(member)
        self._announce_self()
        # Random phases: nodes started together must not probe and gossip in step.
        self._next_probe_at = now + rng.uniform(0, config.probe_interval)
        self._next_gossip_at = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull_at = (
            now + rng.uniform(0, config.push_pull_interval)
            if config.push_pull_interval
            else math.inf
        )
        self._next_reconnect_at = (
            now + rng.uniform(0, config.reconnect_interval)
            if config.reconnect_interval
            else math.inf
        )

    # --- reading ------------------------------------------------------------------

    @property
    def config(self) -> GossipConfig:
        return self._config

    @property
    def local(self) -> Member:
        """This node's own record."""
        return self._members[self.name]

    @property
    def incarnation(self) -> int:
        return self.local.incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard local health: 0 is healthy (see :mod:`.awareness`)."""
        return self._awareness.score

    @property
    def joined(self) -> bool:
        """True once a seed answered the join (or there were no seeds to ask)."""
        return self._joined

    @property
    def leaving(self) -> bool:
        return self._leaving

    @property
    def pending_broadcasts(self) -> int:
        """Updates still to be gossiped; after :meth:`leave`, wait for 0 (or a
        timeout) before stopping the node, so the goodbye gets out."""
        return len(self._broadcasts)

    def members(self, states: Iterable[MemberState] | None = None) -> list[Member]:
        """Every member known (this node included, tombstones too), by name;
        only those in ``states`` if given."""
        wanted = None if states is None else frozenset(states)
        return sorted(
            (m for m in self._members.values() if wanted is None or m.state in wanted),
            key=lambda m: m.name,
        )

    def member(self, name: str) -> Member | None:
        return self._members.get(name)

    def cluster_size(self) -> int:
        """Members believed alive or suspect, this node included."""
        return len(self._live) + 1

    def drain_events(self) -> list[MembershipEvent]:
        """Changes since the last drain (only queued when no ``on_event`` is set)."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_deadline(self) -> float:
        """The earliest time at which :meth:`tick` has something to do. Calling it
        earlier is harmless; later delays probes and timeouts by as much."""
        deadlines = [
            self._next_push_pull_at if self._alive and not self._leaving else math.inf,
            self._next_reconnect_at if self._failed and not self._leaving else math.inf,
            self._next_join_at,
        ]
        if self._broadcasts:
            deadlines.append(self._next_gossip_at)
        probe = self._probe
        if probe is not None:
            # The next probe starts when this one ends, not before.
            deadlines.append(probe.deadline if probe.indirect_sent else probe.direct_deadline)
        elif not self._leaving:
            deadlines.append(self._next_probe_at)
        for check in self._confirming.values():
            deadlines.append(check.deadline if check.indirect_sent else check.direct_deadline)
        deadlines.extend(heard_at for _, heard_at in self._to_confirm.values())
        deadlines.extend(relay.nack_at for relay in self._relays.values())
        deadlines.extend(s.deadline for s in self._suspicions.values())
        if self._config.suspicion_check_lead:
            deadlines.extend(self._check_time(s) for s in self._suspicions.values())
        deadlines.extend(self._tombstones.values())
        return min(deadlines)

    # --- the local node's acts ----------------------------------------------------

    def join(self, seed_addresses: Sequence[str], now: float) -> list[Outgoing]:
        """Ask each seed for a push-pull exchange. Retried every
        ``join_retry_interval`` until one answers (see :attr:`joined`)."""
        seeds = tuple(address for address in seed_addresses if address != self.address)
        self._join_seeds = seeds
        if not seeds:
            self._joined = True
            self._next_join_at = math.inf
            return []
        self._joined = False
        self._next_join_at = now + self._config.join_retry_interval
        return self._join_requests()

    def leave(self, now: float) -> list[Outgoing]:
        """Say goodbye: members will record this node as LEFT, not DEAD. The node stops
        probing but keeps answering and gossiping; see :attr:`pending_broadcasts`.
        A machine that left stays left: a node that comes back is a new machine."""
        if self._leaving:
            return []
        self._leaving = True
        self._next_join_at = math.inf
        self._probe = None
        self._confirming.clear()
        self._to_confirm.clear()
        local = self.local
        self._members[self.name] = dataclasses.replace(
            local, state=MemberState.LEFT, state_changed_at=now
        )
        self._enqueue(Leave(self.name, local.incarnation))
        return self._gossip_round(now)

    def force_leave(self, name: str, now: float) -> list[Outgoing]:
        """An operator removed ``name``, a member this node holds DEAD: record it as
        LEFT and gossip that, so every node stops trying to reconnect to it and lists
        it as gone. Serf calls this force-leave. A member that is alive or suspect is
        left alone (it would refute, and rightly); so is one already LEFT or unknown.
        The member can still come back later with a higher incarnation (a restart)."""
        member = self._members.get(name)
        if member is None or member.state is not MemberState.DEAD or name == self.name:
            return []
        if not self._broadcasts:
            self._keep_gossip_phase(now)
        self._apply_leave(Leave(name, member.incarnation), now)
        return self._eager_push(now)

    def update_local_meta(self, meta: bytes, now: float, *, urgent: bool = False) -> list[Outgoing]:
        """Publish a new metadata blob for this node (its version goes up by one).

        Unless ``urgent``, with ``quiet_metadata`` on, it travels on probe traffic
        only (see the config field)."""
        local = self.local
        self._members[self.name] = dataclasses.replace(
            local, meta=meta, meta_version=local.meta_version + 1
        )
        if self._config.quiet_metadata and not urgent:
            self._enqueue(self._alive_update(), quiet=True)
            return []
        if not self._broadcasts:
            self._keep_gossip_phase(now)
        self._announce_self()
        return self._eager_push(now)

    def report_refused(self, address: str, now: float) -> list[Outgoing]:
        """The transport could not connect to ``address`` because nothing listens
        there (connection refused, not a timeout): the member's process is gone.
        Suspect it at once, with ``refused_suspicion_timeout`` to refute."""
        timeout = self._config.refused_suspicion_timeout
        if not timeout or self._leaving:
            return []
        name = self._names_by_address.get(address)
        member = None if name is None else self._members.get(name)
        if member is None or not member.state.is_live:
            return []
        if member.state is MemberState.ALIVE:
            self._apply_suspect(Suspect(member.name, member.incarnation, self.name), now)
        suspicion = self._suspicions.get(member.name)
        if suspicion is not None:
            suspicion.cap(now + timeout)
        return self._eager_push(now)

    def report_loop_lag(self, seconds: float) -> None:
        """The daemon saw its event loop run ``seconds`` late: doubt ourselves a bit
        more, so our slowness is not blamed on peers (Lifeguard)."""
        if seconds >= self._config.loop_lag_threshold:
            self._awareness.apply_delta(1)

    # --- time -----------------------------------------------------------------------

    def tick(self, now: float) -> list[Outgoing]:
        """Run whatever is due at ``now``.

        A tick ``loop_lag_threshold`` or more after the time the previous one said
        was next means this node was stalled: probes that ran out meanwhile end
        without a verdict, and suspicions that expired meanwhile wait a little more
        (see the module doc)."""
        out: list[Outgoing] = []
        late = now - self._due_at >= self._config.loop_lag_threshold
        self._forget_expired_tombstones(now)
        self._send_due_nacks(now, out)
        self._advance_probe(now, out, late=late)
        self._check_suspects(now, out)
        self._expire_suspicions(now, out, late=late)
        if now >= self._next_gossip_at and self._broadcasts:
            out.extend(self._gossip_round(now))
        self._keep_gossip_phase(now)
        if not self._leaving:
            self._maybe_push_pull(now, out)
            self._maybe_reconnect(now, out)
        if now >= self._next_join_at:
            self._next_join_at = now + self._config.join_retry_interval
            out.extend(self._join_requests())
        out.extend(self._eager_push(now))
        self._due_at = self.next_deadline()
        return out

    # --- messages ---------------------------------------------------------------------

    def receive(self, message: Message, sender_address: str, now: float) -> list[Outgoing]:
        """Handle one message from the node listening at ``sender_address``.

        ``sender_address`` must be the sender's gossip address (where replies go),
        which the transport carries next to the message, not the ephemeral port a
        connection happens to come from.
        """
        out: list[Outgoing] = []
        if not self._broadcasts:
            self._keep_gossip_phase(now)
        refuted_before = self.local.incarnation
        self._sender_is_behind = False
        self._news_for_sender = []
        match message:
            case Ping():
                self._apply_updates(message.updates, now)
                if message.target == self.name:
                    out.append(Outgoing(sender_address, Ack(message.seq, self._piggyback())))
            case Ack():
                self._apply_updates(message.updates, now)
                self._on_ack(message.seq, out)
            case PingReq():
                self._apply_updates(message.updates, now)
                self._relay_ping(message, sender_address, now, out)
            case Nack():
                probe = self._probe_with_seq(message.seq)
                if probe is not None:
                    probe.nacks += 1
                    if probe.indirect_sent and probe.nacks >= probe.expected_nacks:
                        # Every relay tried and got no answer either: nothing is
                        # left to wait for but a very late direct ack.
                        probe.deadline = min(probe.deadline, now)
            case Gossip():
                self._apply_updates(message.updates, now)
            case PushPullRequest():
                self._merge_states(message.states, now)
                states, wanted = plan_response(self._members.values(), message.digest)
                out.append(Outgoing(sender_address, PushPullResponse(states, wanted)))
            case PushPullResponse():
                self._merge_states(message.states, now)
                if message.wanted:
                    states = tuple(
                        full_state(self._members[name])
                        for name in message.wanted
                        if name in self._members
                    )
                    out.append(Outgoing(sender_address, PushPullStates(states)))
                if not self._joined and not self._leaving:
                    self._joined = True
                    self._next_join_at = math.inf
            case PushPullStates():
                self._merge_states(message.states, now)
        if self.local.incarnation != refuted_before or self._sender_is_behind:
            # We refuted an accusation, or the sender accused an older incarnation
            # of ours: tell the sender, straight away.
            out.append(Outgoing(sender_address, Gossip((self._alive_update(),))))
        sender = self._members.get(self._names_by_address.get(sender_address, ""))
        if sender is not None and sender.name != self.name:
            # A member we hold suspect or dead speaks: it refuted and we missed it,
            # or it never heard. Our word makes it tell us its current incarnation.
            if sender.state is MemberState.DEAD:
                self._news_for_sender.append(Dead(sender.name, sender.incarnation, self.name))
            elif sender.state is MemberState.SUSPECT:
                self._news_for_sender.append(Suspect(sender.name, sender.incarnation, self.name))
        if self._news_for_sender:
            # The sender still suspects members we hold dead (it missed the news,
            # and would wait out a suspicion nobody else confirms any more), or is
            # one of them.
            out.append(Outgoing(sender_address, Gossip(tuple(self._news_for_sender))))
            self._news_for_sender = []
        out.extend(self._eager_push(now))
        return out

    # --- probing ----------------------------------------------------------------------

    def _advance_probe(self, now: float, out: list[Outgoing], *, late: bool) -> None:
        probe = self._probe
        if probe is not None and self._advance(probe, now, out, late=late):
            self._probe = None
        for name, check in list(self._confirming.items()):
            if self._advance(check, now, out, late=late):
                del self._confirming[name]
        self._start_confirmations(now, out)
        if self._probe is None and not self._leaving and now >= self._next_probe_at:
            self._start_probe(now, out)

    def _advance(self, probe: _Probe, now: float, out: list[Outgoing], *, late: bool) -> bool:
        """Move one probe on; True once it is over (failed, or given up)."""
        if not probe.indirect_sent and now >= probe.direct_deadline:
            self._send_indirect_probes(probe, now, out)
        if not probe.indirect_sent or now < probe.deadline:
            return False
        if late:
            # We were stalled: the ack may be sitting unread, and a missing answer
            # says more about us than about the target. No verdict.
            return True
        self._probe_failed(probe, now, out)
        return True

    def _start_probe(self, now: float, out: list[Outgoing]) -> None:
        interval = self._awareness.scale(self._config.probe_interval)
        self._next_probe_at = now + interval
        target_name = self._ring.next(self._rng, self._live)
        if target_name is None:
            return
        target = self._members[target_name]
        first: Update | None = None
        if target.state is MemberState.SUSPECT:
            # Buddy system: tell the suspect, so that it can refute.
            first = Suspect(target.name, target.incarnation, self.name)
        self._probe = self._send_probe(target, first, now, out)

    def _send_probe(
        self, target: Member, first: Update | None, now: float, out: list[Outgoing]
    ) -> _Probe:
        seq = self._next_seq()
        out.append(Outgoing(target.address, Ping(seq, target.name, self._piggyback(first))))
        return _Probe(
            seq=seq,
            target=target.name,
            target_address=target.address,
            incarnation=target.incarnation,
            direct_deadline=now + self._awareness.scale(self._config.probe_timeout),
            deadline=now + self._awareness.scale(self._config.probe_interval),
        )

    def _start_confirmations(self, now: float, out: list[Outgoing]) -> None:
        """Probe the members others suspect that we were picked to check (see
        ``confirmation_probes``), unless a probe of ours already is on its way."""
        due, self._to_confirm = self._to_confirm, {}
        for name, (incarnation, _) in due.items():
            suspicion = self._suspicions.get(name)
            if suspicion is None or suspicion.incarnation != incarnation:
                continue  # refuted or over meanwhile
            if name in self._confirming or (self._probe and self._probe.target == name):
                continue
            suspect = self._members[name]
            # The ping carries the suspicion (buddy system) and is this node's
            # last-chance check of the suspect.
            suspicion.checks = max(suspicion.checks, 1)
            suspicion.last_check_at = now
            accusation = Suspect(name, incarnation, self.name)
            self._confirming[name] = self._send_probe(suspect, accusation, now, out)

    def _send_indirect_probes(self, probe: _Probe, now: float, out: list[Outgoing]) -> None:
        probe.indirect_sent = True
        # A late tick (a stalled node) must not cut the indirect probes' time short.
        window = self._awareness.scale(self._config.probe_interval - self._config.probe_timeout)
        probe.deadline = max(probe.deadline, now + window)
        relays = self._alive.sample(self._rng, self._config.indirect_checks, exclude=probe.target)
        probe.expected_nacks = len(relays)
        for relay in relays:
            request = PingReq(probe.seq, probe.target, probe.target_address, self._piggyback())
            out.append(Outgoing(self._members[relay].address, request))

    def _probe_failed(self, probe: _Probe, now: float, out: list[Outgoing]) -> None:
        # Lifeguard: relays that should have nacked but did not suggest that the
        # trouble is ours; with nobody to ask, any failure counts against us.
        if probe.expected_nacks:
            self._awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply_delta(1)
        target = self._members.get(probe.target)
        if target is None or not target.state.is_live:
            return
        if target.incarnation != probe.incarnation:
            # It refuted while we waited: a sign of life fresher than our ping.
            return
        accusation = Suspect(target.name, target.incarnation, self.name)
        was_suspect = target.state is MemberState.SUSPECT
        self._apply_suspect(accusation, now)
        if not was_suspect and self._members[target.name].state is MemberState.SUSPECT:
            out.append(Outgoing(target.address, Gossip((accusation,))))

    def _probe_with_seq(self, seq: int) -> _Probe | None:
        """Our probe (regular or confirmation) that sent ``seq``."""
        if self._probe is not None and self._probe.seq == seq:
            return self._probe
        for check in self._confirming.values():
            if check.seq == seq:
                return check
        return None

    def _on_ack(self, seq: int, out: list[Outgoing]) -> None:
        probe = self._probe_with_seq(seq)
        if probe is not None:
            if not probe.indirect_sent:
                self._awareness.apply_delta(-1)
            if probe is self._probe:
                self._probe = None
            else:
                del self._confirming[probe.target]
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            out.append(Outgoing(relay.requester_address, Ack(relay.requester_seq)))

    def _relay_ping(
        self, request: PingReq, requester_address: str, now: float, out: list[Outgoing]
    ) -> None:
        seq = self._next_seq()
        nack_at = now + _RELAY_NACK_FRACTION * self._config.probe_timeout
        self._relays[seq] = _Relay(requester_address, request.seq, nack_at)
        out.append(Outgoing(request.target_address, Ping(seq, request.target, self._piggyback())))

    def _send_due_nacks(self, now: float, out: list[Outgoing]) -> None:
        due = [seq for seq, relay in self._relays.items() if now >= relay.nack_at]
        for seq in due:
            relay = self._relays.pop(seq)
            out.append(Outgoing(relay.requester_address, Nack(relay.requester_seq)))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    # --- suspicion, death, tombstones ---------------------------------------------------

    def _check_time(self, suspicion: Suspicion) -> float:
        """When to ping the suspect ourselves: shortly before the suspicion could
        expire at the earliest (its minimum), and again shortly before it will
        expire if that is later. inf when both were sent."""
        lead = self._config.suspicion_check_lead
        if suspicion.checks == 0:
            earliest = suspicion.started_at + suspicion.min_timeout - lead
            return max(suspicion.started_at, min(earliest, suspicion.deadline - lead))
        if suspicion.checks == 1 and suspicion.deadline - lead > suspicion.last_check_at + lead:
            return suspicion.deadline - lead
        return math.inf

    def _check_suspects(self, now: float, out: list[Outgoing]) -> None:
        """Last chance before a death: ping each member we still suspect, carrying
        the suspicion, so that a live one whose refutation we missed answers with
        its current Alive, and a dead one's host refuses (see ``report_refused``)."""
        if not self._config.suspicion_check_lead:
            return
        for name, suspicion in self._suspicions.items():
            if now < self._check_time(suspicion):
                continue
            suspicion.checks += 1
            suspicion.last_check_at = now
            suspect = self._members[name]
            accusation = Suspect(name, suspicion.incarnation, self.name)
            ping = Ping(self._next_seq(), name, self._piggyback(accusation))
            out.append(Outgoing(suspect.address, ping))

    def _expire_suspicions(self, now: float, out: list[Outgoing], *, late: bool) -> None:
        expired = [name for name, s in self._suspicions.items() if now >= s.deadline]
        for name in expired:
            suspicion = self._suspicions[name]
            if late and not suspicion.deferred:
                # We were stalled: a refutation may be waiting unread. Give it, and
                # one last ping of the suspect, a probe timeout.
                suspicion.defer(now + self._config.probe_timeout)
                suspicion.checks, suspicion.last_check_at = 2, now  # this is the last one
                accusation = Suspect(name, suspicion.incarnation, self.name)
                ping = Ping(self._next_seq(), name, self._piggyback(accusation))
                out.append(Outgoing(self._members[name].address, ping))
                continue
            death = Dead(name, suspicion.incarnation, self.name)
            self._apply_dead(death, now)
            # The members that accused it run timers of their own; an epidemic
            # misses one now and then (the dead member takes its share of the
            # sends), and it would wait out its own, longer, timer. Tell them.
            for accuser in sorted(suspicion.accusers):
                if accuser != self.name and accuser in self._alive:
                    out.append(Outgoing(self._members[accuser].address, Gossip((death,))))

    def _forget_expired_tombstones(self, now: float) -> None:
        expired = [name for name, at in self._tombstones.items() if now >= at]
        for name in expired:
            del self._tombstones[name]
            member = self._members.pop(name)
            if self._names_by_address.get(member.address) == name:
                del self._names_by_address[member.address]
            self._emit(EventKind.FORGOTTEN, member, now)
        for name in [n for n, (_, until) in self._failed.items() if now >= until]:
            del self._failed[name]

    # --- gossip, push-pull, reconnect, join ------------------------------------------------

    def _gossip_round(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for peer in self._gossip_targets(now):
            updates = self._take_broadcasts(self._config.max_piggyback_bytes)
            if not updates:
                break
            out.append(Outgoing(self._members[peer].address, Gossip(tuple(updates))))
        self._fresh_news = False
        return out

    def _eager_push(self, now: float) -> list[Outgoing]:
        if self._fresh_news and self._config.eager_push and self._broadcasts:
            return self._gossip_round(now)
        self._fresh_news = False
        return []

    def _keep_gossip_phase(self, now: float) -> None:
        """Move the idle gossip clock to its next beat after ``now``: rounds keep
        their phase while there is nothing to send, and news arriving between beats
        waits for the next one (``eager_push`` aside)."""
        if now >= self._next_gossip_at:
            steps = math.floor((now - self._next_gossip_at) / self._config.gossip_interval) + 1
            self._next_gossip_at += steps * self._config.gossip_interval

    def _gossip_targets(self, now: float) -> list[str]:
        """Random live peers, plus members dead for less than gossip_to_the_dead_time,
        so that a live member declared dead by mistake hears of it and refutes."""
        k = self._config.gossip_nodes
        recently_dead = [
            name
            for name in self._tombstones
            if self._members[name].state is MemberState.DEAD
            and now - self._members[name].state_changed_at < self._config.gossip_to_the_dead_time
        ]
        if not recently_dead:
            return self._live.sample(self._rng, k)
        pool = self._live.names() + recently_dead
        return self._rng.sample(pool, min(k, len(pool)))

    def _maybe_push_pull(self, now: float, out: list[Outgoing]) -> None:
        if now < self._next_push_pull_at:
            return
        self._next_push_pull_at = now + self._config.scaled_push_pull_interval(self.cluster_size())
        partner = self._alive.sample(self._rng, 1)
        if partner:
            out.append(Outgoing(self._members[partner[0]].address, self._push_pull_request()))

    def _maybe_reconnect(self, now: float, out: list[Outgoing]) -> None:
        if now < self._next_reconnect_at:
            return
        self._next_reconnect_at = now + self._config.reconnect_interval
        if self._failed:
            name = self._rng.choice(list(self._failed))
            address, _ = self._failed[name]
            out.append(Outgoing(address, self._push_pull_request(include_self=True)))

    def _join_requests(self) -> list[Outgoing]:
        request = self._push_pull_request(include_self=True, join=True)
        return [Outgoing(seed, request) for seed in self._join_seeds]

    def _push_pull_request(self, *, include_self: bool = False, join: bool = False) -> Message:
        # A joiner leaves itself out of its digest so that the seed sends back what
        # the cluster believes about it: a previous life's record (dead, or alive
        # with other metadata) that the joiner must outbid.
        digest = tuple(
            digest_entry(m) for m in self._members.values() if not join or m is not self.local
        )
        states = (full_state(self.local),) if include_self else ()
        return PushPullRequest(digest, states, join)

    # --- broadcasts -------------------------------------------------------------------------

    def _enqueue(self, update: Update, *, quiet: bool = False) -> None:
        if quiet:
            self._quiet.enqueue(update.name, update, update_size(update))
            return
        self._broadcasts.enqueue(update.name, update, update_size(update))
        self._fresh_news = True

    def _take_broadcasts(self, budget: int) -> list[Update]:
        return self._broadcasts.take(
            transmit_limit=self._config.retransmit_limit(self.cluster_size()),
            max_bytes=budget,
            max_items=self._config.max_piggyback_updates,
        )

    def _piggyback(self, first: Update | None = None) -> tuple[Update, ...]:
        """Updates for a probe-traffic message: ``first``, then urgent news, then
        metadata-only news in what room is left."""
        budget = self._config.max_piggyback_bytes - (0 if first is None else update_size(first))
        urgent = self._take_broadcasts(budget)
        room = budget - sum(update_size(u) for u in urgent)
        items = self._config.max_piggyback_updates - len(urgent)
        quiet: list[Update] = []
        if self._quiet and room > 0 and items > 0:
            quiet = self._quiet.take(
                transmit_limit=self._config.retransmit_limit(self.cluster_size()),
                max_bytes=room,
                max_items=items,
            )
        return (*([first] if first is not None else []), *urgent, *quiet)

    def _alive_update(self) -> Alive:
        local = self.local
        return Alive(local.name, local.incarnation, local.address, local.meta, local.meta_version)

    def _announce_self(self) -> None:
        self._enqueue(self._alive_update())

    # --- applying updates -----------------------------------------------------------------

    def _apply_updates(self, updates: Iterable[Update], now: float) -> None:
        for update in updates:
            match update:
                case Alive():
                    self._apply_alive(update, now)
                case Suspect():
                    self._apply_suspect(update, now)
                case Dead():
                    self._apply_dead(update, now)
                case Leave():
                    self._apply_leave(update, now)

    def _merge_states(self, states: Iterable[FullState], now: float) -> None:
        for state in states:
            # The Alive that carried this member's address and metadata.
            carrier = Alive(
                state.name, state.meta_incarnation, state.address, state.meta, state.meta_version
            )
            if state.name == self.name:
                if state.state is MemberState.ALIVE:
                    self._apply_own_alive(
                        dataclasses.replace(carrier, incarnation=state.incarnation)
                    )
                else:
                    self._accused(state.incarnation)
                continue
            known = state.name in self._members
            if state.state is MemberState.ALIVE:
                self._apply_alive(dataclasses.replace(carrier, incarnation=state.incarnation), now)
            elif state.state is MemberState.SUSPECT or (state.state is MemberState.DEAD and known):
                # A death we did not witness is only a suspicion here: our own timer
                # decides, and the member gets its chance to refute.
                self._apply_alive(carrier, now)
                self._apply_suspect(Suspect(state.name, state.incarnation, self.name), now)
            elif state.state is MemberState.LEFT and known:
                self._apply_alive(carrier, now)
                self._apply_leave(Leave(state.name, state.incarnation), now)

    def _apply_alive(self, alive: Alive, now: float) -> None:
        if alive.name == self.name:
            self._apply_own_alive(alive)
            return
        member = self._members.get(alive.name)
        if member is None:
            new = Member(
                name=alive.name,
                address=alive.address,
                incarnation=alive.incarnation,
                state=MemberState.ALIVE,
                state_changed_at=now,
                meta=alive.meta,
                meta_version=alive.meta_version,
                meta_incarnation=alive.incarnation,
            )
            self._put(new)
            self._emit(EventKind.JOINED, new, now)
            self._enqueue(alive)
            return
        newer_state = alive.incarnation > member.incarnation
        newer_meta = (alive.incarnation, alive.meta_version) > (
            member.meta_incarnation,
            member.meta_version,
        )
        if not newer_state and (not newer_meta or member.state in _DOWN):
            return
        updated = member
        if newer_meta:
            updated = dataclasses.replace(
                updated,
                address=alive.address,
                meta=alive.meta,
                meta_version=alive.meta_version,
                meta_incarnation=alive.incarnation,
            )
        if newer_state:
            updated = dataclasses.replace(updated, incarnation=alive.incarnation)
            if member.state is not MemberState.ALIVE:
                updated = dataclasses.replace(
                    updated, state=MemberState.ALIVE, state_changed_at=now
                )
        self._put(updated)
        if member.state is MemberState.SUSPECT and updated.state is MemberState.ALIVE:
            self._emit(EventKind.ALIVE, updated, now)
        elif member.state in _DOWN and updated.state is MemberState.ALIVE:
            self._emit(EventKind.JOINED, updated, now)
        if (updated.meta, updated.meta_version) != (member.meta, member.meta_version):
            self._emit(EventKind.META_UPDATED, updated, now)
        meta_only = not newer_state and updated.state is member.state
        self._enqueue(alive, quiet=meta_only and self._config.quiet_metadata)

    def _apply_own_alive(self, alive: Alive) -> None:
        local = self.local
        if self._leaving or alive.incarnation < local.incarnation:
            return
        if alive.incarnation == local.incarnation:
            if alive.meta_version < local.meta_version:
                return  # an older announcement of ours, still travelling
            said = (alive.address, alive.meta, alive.meta_version)
            if said == (local.address, local.meta, local.meta_version):
                return  # our own words
        # Someone speaks for us with something we did not say (our previous life,
        # usually): outbid it.
        self._refute(alive.incarnation)

    def _apply_suspect(self, suspect: Suspect, now: float) -> None:
        if suspect.name == self.name:
            self._accused(suspect.incarnation)
            return
        member = self._members.get(suspect.name)
        if member is None:
            return
        if member.state is MemberState.DEAD and suspect.incarnation <= member.incarnation:
            if suspect.accuser != self.name:
                self._news_for_sender.append(Dead(member.name, member.incarnation, self.name))
            return
        if suspect.incarnation < member.incarnation:
            return
        timer = self._suspicions.get(suspect.name)
        if timer is not None and suspect.incarnation == timer.incarnation:
            if timer.confirm(suspect.accuser):
                self._enqueue(suspect)
            return
        if member.state in _DOWN:
            return
        n = self.cluster_size()
        if suspect.accuser != self.name and not self._leaving:
            chance = self._config.confirmation_probe_chance(n)
            if chance >= 1 or (chance > 0 and self._rng.random() < chance):
                self._to_confirm[suspect.name] = (suspect.incarnation, now)
        self._suspicions[suspect.name] = Suspicion(
            accuser=suspect.accuser,
            incarnation=suspect.incarnation,
            started_at=now,
            min_timeout=self._config.suspicion_min_timeout(n),
            max_timeout=self._config.suspicion_max_timeout(n),
            expected=self._config.expected_confirmations(n),
        )
        updated = dataclasses.replace(
            member,
            incarnation=suspect.incarnation,
            state=MemberState.SUSPECT,
            state_changed_at=now
            if member.state is not MemberState.SUSPECT
            else (member.state_changed_at),
        )
        self._put(updated)
        if member.state is not MemberState.SUSPECT:
            self._emit(EventKind.SUSPECT, updated, now)
        self._enqueue(suspect)

    def _apply_dead(self, dead: Dead, now: float) -> None:
        if dead.name == self.name:
            self._accused(dead.incarnation)
            return
        member = self._members.get(dead.name)
        if member is None or dead.incarnation < member.incarnation or member.state in _DOWN:
            return
        updated = dataclasses.replace(
            member, incarnation=dead.incarnation, state=MemberState.DEAD, state_changed_at=now
        )
        self._put(updated)
        self._failed[dead.name] = (member.address, now + self._config.reconnect_timeout)
        self._emit(EventKind.DEAD, updated, now)
        self._enqueue(dead)

    def _apply_leave(self, leave: Leave, now: float) -> None:
        if leave.name == self.name:
            self._accused(leave.incarnation)
            return
        member = self._members.get(leave.name)
        if member is None or leave.incarnation < member.incarnation:
            return
        if member.state is MemberState.LEFT:
            return
        updated = dataclasses.replace(
            member, incarnation=leave.incarnation, state=MemberState.LEFT, state_changed_at=now
        )
        self._put(updated)
        self._failed.pop(leave.name, None)
        self._emit(EventKind.LEFT, updated, now)
        self._enqueue(leave)

    def _accused(self, incarnation: int) -> None:
        """Someone says we are suspect, dead or gone: refute if they mean our current
        incarnation; if they mean an older one, just correct the messenger."""
        if self._leaving:
            return
        if incarnation >= self.local.incarnation:
            self._refute(incarnation)
        else:
            self._sender_is_behind = True

    def _refute(self, accused_incarnation: int) -> None:
        local = self.local
        incarnation = max(local.incarnation, accused_incarnation) + 1
        self._members[self.name] = dataclasses.replace(
            local, incarnation=incarnation, meta_incarnation=incarnation
        )
        self._awareness.apply_delta(1)
        self._announce_self()

    # --- the member table -------------------------------------------------------------------

    def _put(self, member: Member) -> None:
        """Store ``member`` and keep the derived indexes (live peers, probe order,
        suspicion timers, tombstones) in step with its state."""
        previous = self._members.get(member.name)
        self._members[member.name] = member
        name = member.name
        if previous is not None and self._names_by_address.get(previous.address) == name:
            del self._names_by_address[previous.address]
        self._names_by_address[member.address] = name
        if member.state.is_live:
            if name not in self._live:
                self._live.add(name)
                self._ring.insert(self._rng, name)
            self._tombstones.pop(name, None)
        else:
            self._live.discard(name)
            if previous is None or previous.state is not member.state:
                self._tombstones[name] = member.state_changed_at + self._config.dead_node_reclaim
        if member.state is MemberState.ALIVE:
            self._alive.add(name)
            self._failed.pop(name, None)
        else:
            self._alive.discard(name)
        if member.state is not MemberState.SUSPECT:
            self._suspicions.pop(name, None)

    def _emit(self, kind: EventKind, member: Member, now: float) -> None:
        event = MembershipEvent(kind, member, now)
        if self._on_event is not None:
            self._on_event(event)
        else:
            self._events.append(event)
