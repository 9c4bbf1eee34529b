"""A deterministic, in-memory cluster of gossip state machines on a fake clock.

Tests and benchmarks run hundreds of simulated seconds of a 1,000-node cluster in
seconds of real time, and the same seed replays the same run exactly.

- :class:`SimulatedNetwork` is the wire on a fake clock
  (:class:`~murmur.node.fake_clock.FakeClock`, the Raft simulation's too): each
  message draws its own delay from its link's :class:`LinkModel` (so messages
  reorder), may be lost, and is dropped at delivery time if a partition separates
  the two ends.
- :class:`Simulation` runs one :class:`~murmur.node.gossip.machine.Membership` per node
  on it, with faults (crash, restart, stall, freeze and thaw, partition) and
  observers (when did every live node see X dead, how fast did a join spread, how
  many false "dead" verdicts, how soon a stalled node was alive again everywhere,
  messages and bytes per node per second).

Three ways a node stops answering, as seen from outside:

- :meth:`Simulation.crash`: the process is gone; its host refuses connections
  (``refuse_when_down``, a ``kill -9``) or says nothing (a host that vanished);
- :meth:`Simulation.freeze` until :meth:`Simulation.thaw`: a ``kill -STOP`` (a hung
  host, a pulled cable, a kernel panic): silence, messages pile up unread, and a
  thawed node handles them late, like ``kill -CONT``;
- :meth:`Simulation.stall`: the same for a given time (a CPU stall, a GC pause).

A frozen node counts as down (a verdict about it is a true one); a stalled node
counts as running. While they last the two look the same to every other node.

Default link: loopback-like, 0.3 ms one way plus an exponential jitter of mean
0.2 ms (about the 0.57 ms p50 / 1 ms p99 round trip of a gRPC mTLS call measured
on the project's machines), no loss. By default a crashed node's address refuses
connections, as a killed process's host does (``refuse_when_down``); partitions
drop messages silently, as a firewall DROP rule does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from murmur.node.fake_clock import FakeClock
from murmur.node.gossip.codec import encoded_size
from murmur.node.gossip.config import GossipConfig
from murmur.node.gossip.errors import GossipError
from murmur.node.gossip.events import EventKind, MembershipEvent
from murmur.node.gossip.machine import Membership
from murmur.node.gossip.member import Member, MemberState
from murmur.node.gossip.messages import Message, Outgoing


class SimulationError(GossipError):
    """A simulation was asked for something impossible (unknown node, ...)."""


@dataclass(frozen=True, slots=True)
class LinkModel:
    """How one direction of a link behaves."""

    base_delay: float = 0.0003
    """Fixed one-way delay, seconds."""
    jitter: float = 0.0002
    """Mean of an exponential delay added to each message."""
    loss_rate: float = 0.0
    """Probability that a message is lost."""
    reorder_rate: float = 0.0
    """Probability that a message is held back an extra ``reorder_delay``."""
    reorder_delay: float = 0.01

    def delay(self, rng: random.Random) -> float | None:
        """This message's delay, or None if it is lost."""
        if self.loss_rate and rng.random() < self.loss_rate:
            return None
        delay = self.base_delay + (rng.expovariate(1 / self.jitter) if self.jitter else 0.0)
        if self.reorder_rate and rng.random() < self.reorder_rate:
            delay += self.reorder_delay
        return delay


class SimulatedNetwork:
    """The wire between simulated nodes, on a fake clock.

    Args:
        rng: draws every message's delay and loss.
        default_link: the model of every link not set with :meth:`set_link`.
        clock: the simulated time; a new one at 0 unless given (a test may run other
            simulations on the same clock).
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        default_link: LinkModel = LinkModel(),
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self._rng = rng
        self.default_link = default_link
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._receivers: dict[str, Callable[[Message, str], None]] = {}
        self._group_of: dict[str, int] | None = None
        self._filters: list[Callable[[str, str, Message], bool]] = []
        self.on_refused: Callable[[str, str], None] | None = None
        """Called as ``on_refused(source, destination)`` one delay after a message
        reached an address where nothing listens (a crashed process on a live host
        answers a connection with a reset). None: such messages vanish silently."""

    @property
    def now(self) -> float:
        return self.clock.now

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at`` (ties in scheduling order)."""
        self.clock.schedule(at, action)

    def run_until(self, until: float) -> None:
        """Run every event up to ``until``, then set the clock to ``until``."""
        self.clock.run_until(until)

    def attach(self, address: str, receive: Callable[[Message, str], None]) -> None:
        """Deliver messages for ``address`` to ``receive(message, sender_address)``."""
        self._receivers[address] = receive

    def detach(self, address: str) -> None:
        self._receivers.pop(address, None)

    def set_link(self, source: str, destination: str, model: LinkModel) -> None:
        """Override the model of the link from ``source`` to ``destination``."""
        self._links[(source, destination)] = model

    def partition(self, groups: Iterable[Collection[str]]) -> None:
        """Only addresses in the same group can talk; addresses in no group talk to
        no one."""
        self._group_of = {}
        for index, group in enumerate(groups):
            for address in group:
                self._group_of[address] = index

    def heal(self) -> None:
        self._group_of = None

    def can_talk(self, source: str, destination: str) -> bool:
        if self._group_of is None:
            return True
        group = self._group_of.get(source)
        return group is not None and group == self._group_of.get(destination)

    def add_filter(self, drop: Callable[[str, str, Message], bool]) -> None:
        """Lose every message for which ``drop(source, destination, message)`` is
        true (a test's scalpel: "this node never hears gossip about X")."""
        self._filters.append(drop)

    def clear_filters(self) -> None:
        self._filters.clear()

    def send(self, source: str, destination: str, message: Message) -> None:
        """Put ``message`` on the wire; it may be delayed, lost or cut off."""
        if any(drop(source, destination, message) for drop in self._filters):
            return
        link = self._links.get((source, destination), self.default_link)
        delay = link.delay(self._rng)
        if delay is None:
            return

        def deliver() -> None:
            if not self.can_talk(source, destination):
                return
            receiver = self._receivers.get(destination)
            if receiver is not None:
                receiver(message, source)
            elif self.on_refused is not None:
                refused = self.on_refused
                self.schedule(self.now + delay, lambda: refused(source, destination))

        self.schedule(self.now + delay, deliver)


@dataclass(slots=True)
class Traffic:
    """Messages and bytes sent over a window of simulated time."""

    messages: int
    bytes: int
    seconds: float
    nodes: int

    @property
    def messages_per_node_second(self) -> float:
        return self.messages / max(1e-9, self.seconds * self.nodes)

    @property
    def bytes_per_node_second(self) -> float:
        return self.bytes / max(1e-9, self.seconds * self.nodes)


@dataclass(frozen=True, slots=True)
class Observation:
    """``observer`` saw ``subject`` change (``kind``) at ``at``."""

    at: float
    observer: str
    subject: str
    kind: EventKind
    heard_at: float | None = None
    """When the message behind the change reached the observer's host, if that was
    before ``at``: a stalled observer reads its backlog late, and what it then
    learns is news from that earlier time."""

    @property
    def news_at(self) -> float:
        """When the news behind the change was current (see ``heard_at``)."""
        return self.at if self.heard_at is None else self.heard_at


@dataclass(frozen=True, slots=True)
class StallWindow:
    """``name`` was stalled from ``start`` to ``end``."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class StallReport:
    """What repeated stalls of some nodes did to everyone's verdicts.

    A DEAD verdict about a node while it is stalled, or within ``grace`` seconds
    after its stall ended (news already on its way), is a *stall verdict*: from
    outside, the stalled node was as silent as a failed one. Any other DEAD verdict
    about a running node is a *false verdict*: a node that answered was declared
    dead (Lifeguard's false positive).
    """

    stalls: list[StallWindow]
    false_verdicts: list[Observation]
    """DEAD verdicts about running nodes that were not stalled (see above)."""
    stall_verdicts: list[Observation]
    """DEAD verdicts about nodes during (or just after) one of their stalls."""
    stalls_declared_dead: int
    """Stalls during which at least one node declared the stalled node dead."""
    recoveries: list[float]
    """Per stall that caused a suspicion or a verdict: seconds from the stall's end
    until every running node held the node alive again (inf if that never came
    before its next stall or the end of the run)."""


@dataclass(slots=True)
class _SimNode:
    name: str
    address: str
    machine: Membership | None = None  # None while crashed
    generation: int = 0
    stalled_until: float = -math.inf
    backlog: list[tuple[Message, str, float]] = field(default_factory=list)
    """Messages that arrived while stalled: (message, sender, arrived at)."""
    wake_at: float = math.inf
    messages_sent: int = 0
    bytes_sent: int = 0


def node_name(index: int) -> str:
    return f"node-{index:04d}"


class Simulation:
    """A cluster of ``n_nodes`` gossip nodes on one simulated network.

    Args:
        n_nodes: nodes at the start.
        config: every node's gossip config.
        seed: the run's only source of randomness.
        link: the default link model (loopback-like unless given).
        converged: start with every node knowing every other (cheap even at 1,000
            nodes); if False, node 0 starts alone and the others join it at time 0.
        refuse_when_down: messages to a crashed node are refused and the sender's
            transport says so (``report_refused``), as for a killed process on a
            live host; False models a host that vanished (silence).
        measure_bytes: encode every message to count bytes (costs time).
        report_stall_lag: a stalled node reports its stall as event-loop lag when
            it resumes, as the daemon's lag monitor would.
        backlog_first: a node resuming from a stall reads the messages that waited
            for it before its timers run; False runs its timers first (an event loop
            gives no such order: the daemon may see its probe time out before it
            reads the ack that waited).
        clock: the simulated time, shared with whatever else runs on it (a Raft
            simulation, say); a new one at 0 unless given. Nodes start at its
            current time.
    """

    def __init__(
        self,
        n_nodes: int,
        config: GossipConfig | None = None,
        seed: int = 0,
        *,
        link: LinkModel | None = None,
        converged: bool = True,
        refuse_when_down: bool = True,
        measure_bytes: bool = True,
        report_stall_lag: bool = True,
        backlog_first: bool = True,
        clock: FakeClock | None = None,
    ) -> None:
        self.config = config or GossipConfig()
        self.seed = seed
        self._rng = random.Random(f"simulation:{seed}")
        self.network = SimulatedNetwork(
            rng=random.Random(f"network:{seed}"), default_link=link or LinkModel(), clock=clock
        )
        self.clock = self.network.clock
        self.measure_bytes = measure_bytes
        if refuse_when_down:
            self.network.on_refused = self._refused
        self.report_stall_lag = report_stall_lag
        self.backlog_first = backlog_first
        self._nodes: dict[str, _SimNode] = {}
        self._by_address: dict[str, _SimNode] = {}
        self._next_index = 0
        self.observations: list[Observation] = []
        self._by_subject_kind: dict[tuple[str, EventKind], list[Observation]] = {}
        self._gone: dict[str, list[list[float]]] = {}  # name -> [crashed or left at, back at]
        self._stalls: list[StallWindow] = []
        self._heard_at: float | None = None  # while a resumed node reads its backlog
        self._by_subject: dict[str, list[Observation]] = {}
        self._traffic_since = self.now
        self._joined_at: dict[str, float] = {}

        names = [self._new_name() for _ in range(n_nodes)]
        if converged:
            shared = [
                Member(name, self.address_of(name), 0, MemberState.ALIVE, self.now)
                for name in names
            ]
            for name in names:
                self._start_node(name, initial_members=shared)
        else:
            for index, name in enumerate(names):
                self._start_node(name, seeds=[] if index == 0 else [self.address_of(names[0])])

    # --- time -------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def run_until(self, until: float) -> None:
        self.clock.run_until(until)

    def run_for(self, seconds: float) -> None:
        self.clock.run_for(seconds)

    # --- faults and changes ----------------------------------------------------------

    def add_node(self, *, seeds: Sequence[str] | None = None) -> str:
        """Start a new node now and join it through ``seeds`` (names; default: one
        random running node). Returns its name."""
        name = self._new_name()
        seed_names = list(seeds) if seeds is not None else self._random_running(1)
        self._start_node(name, seeds=[self.address_of(s) for s in seed_names])
        return name

    def crash(self, name: str) -> None:
        """Kill the node: it stops at once and messages to it are lost."""
        node = self._node(name)
        node.machine = None
        node.backlog.clear()
        node.wake_at = math.inf
        self.network.detach(node.address)
        self._gone.setdefault(name, []).append([self.now, math.inf])

    def restart(
        self, name: str, *, incarnation: int = 0, seeds: Sequence[str] | None = None
    ) -> None:
        """Start a crashed node again (same name and address, new process state) and
        join it through ``seeds`` (default: one random running node)."""
        if self._node(name).machine is not None:
            raise SimulationError(f"{name} is running; crash it before restarting it")
        for interval in self._gone.get(name, ()):
            interval[1] = min(interval[1], self.now)
        seed_names = list(seeds) if seeds is not None else self._random_running(1, exclude=name)
        self._start_node(
            name, seeds=[self.address_of(s) for s in seed_names], incarnation=incarnation
        )

    def stall(self, name: str, seconds: float) -> None:
        """Freeze the node for ``seconds`` (a CPU stall): it processes nothing, then
        everything that arrived meanwhile, late."""
        node = self._node(name)
        if node.machine is None:
            raise SimulationError(f"{name} is down; it cannot stall")
        until = self.now + seconds
        if until <= node.stalled_until:
            return
        node.stalled_until = until
        self._stalls.append(StallWindow(name, self.now, until))
        generation = node.generation
        self.network.schedule(until, lambda: self._resume(node, generation, seconds))

    def freeze(self, name: str) -> None:
        """``kill -STOP``: the node stops without a word; its host accepts messages
        that nobody reads. Unlike a stall it counts as down until :meth:`thaw`."""
        node = self._node(name)
        if node.machine is None:
            raise SimulationError(f"{name} is down; it cannot be frozen")
        if node.stalled_until == math.inf:
            return
        node.stalled_until = math.inf
        self._gone.setdefault(name, []).append([self.now, math.inf])

    def thaw(self, name: str) -> None:
        """``kill -CONT``: the frozen node runs again and handles its backlog late."""
        node = self._node(name)
        if node.machine is None or node.stalled_until != math.inf:
            raise SimulationError(f"{name} is not frozen")
        node.stalled_until = self.now
        frozen_at = self.now
        for interval in self._gone.get(name, ()):
            if interval[1] == math.inf:
                frozen_at, interval[1] = interval[0], self.now
        self._resume(node, node.generation, self.now - frozen_at)

    def stall_repeatedly(
        self,
        stallers: Sequence[str],
        *,
        until: float,
        rng: random.Random,
        stall: tuple[float, float] = (2.0, 5.0),
        between: tuple[float, float] = (5.0, 20.0),
    ) -> list[StallWindow]:
        """Run until ``until`` while each of ``stallers`` stalls for a time drawn
        from ``stall``, runs for one drawn from ``between``, stalls again...
        (Lifeguard's test: 10% of nodes stalling 2-5 s at a time). Each staller's
        first stall starts within the first ``between[1]`` seconds."""
        first = len(self._stalls)
        next_stall = {name: self.now + rng.uniform(0, between[1]) for name in stallers}
        while next_stall:
            name = min(next_stall, key=next_stall.__getitem__)
            if next_stall[name] >= until:
                break
            self.run_until(next_stall[name])
            seconds = rng.uniform(*stall)
            self.stall(name, seconds)
            next_stall[name] = self.now + seconds + rng.uniform(*between)
        self.run_until(until)
        return self._stalls[first:]

    def leave(self, name: str) -> None:
        """Graceful leave: the node says goodbye and keeps gossiping until done."""
        node = self._node(name)
        if node.machine is None:
            raise SimulationError(f"{name} is down; it cannot leave")
        self._send(node, node.machine.leave(self.now))
        self._gone.setdefault(name, []).append([self.now, math.inf])
        self._reschedule(node)

    def force_leave(self, by: str, name: str) -> None:
        """An operator on ``by`` removes the dead member ``name`` (``node remove``)."""
        node = self._node(by)
        if node.machine is None:
            raise SimulationError(f"{by} is down; it cannot remove {name}")
        self._send(node, node.machine.force_leave(name, self.now))
        self._reschedule(node)

    def update_meta(self, name: str, meta: bytes) -> None:
        node = self._node(name)
        if node.machine is None:
            raise SimulationError(f"{name} is down; it cannot publish metadata")
        self._send(node, node.machine.update_local_meta(meta, self.now))
        self._reschedule(node)

    def partition(self, groups: Iterable[Collection[str]]) -> None:
        """Split the network: only nodes in the same group can talk."""
        self.network.partition([{self.address_of(name) for name in group} for group in groups])

    def heal(self) -> None:
        self.network.heal()

    # --- observers ------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._nodes)

    def running(self) -> list[str]:
        """Nodes in the cluster: started, not crashed, not frozen, not left (stalled
        ones count)."""
        return [
            name
            for name, node in self._nodes.items()
            if node.machine is not None
            and not node.machine.leaving
            and node.stalled_until != math.inf
        ]

    def machine(self, name: str) -> Membership:
        machine = self._node(name).machine
        if machine is None:
            raise SimulationError(f"{name} is down")
        return machine

    def view(self, name: str) -> dict[str, MemberState]:
        """What ``name`` believes about every member it knows."""
        return {m.name: m.state for m in self.machine(name).members()}

    def is_converged(self) -> bool:
        """Every running node sees exactly the running nodes as alive (and any other
        node, if it knows it at all, as dead or left)."""
        running = set(self.running())
        for name in running:
            alive = {m.name for m in self.machine(name).members() if m.state is MemberState.ALIVE}
            if alive != running:
                return False
        return True

    def seen_by_all_at(self, subject: str, kind: EventKind, *, since: float) -> float | None:
        """When every running node other than ``subject`` had recorded ``kind``
        about it at or after ``since`` (None if some had not)."""
        first: dict[str, float] = {}
        for observation in self._by_subject_kind.get((subject, kind), ()):
            if observation.at >= since:
                first.setdefault(observation.observer, observation.at)
        latest = since
        for name in self.running():
            if name == subject:
                continue
            if name not in first:
                return None
            latest = max(latest, first[name])
        return latest

    def informed_times(self, subject: str, *, since: float) -> list[float]:
        """Sorted delays after ``since`` at which running nodes first learned that
        ``subject`` joined."""
        first: dict[str, float] = {}
        for observation in self._by_subject_kind.get((subject, EventKind.JOINED), ()):
            if observation.at >= since:
                first.setdefault(observation.observer, observation.at - since)
        running = set(self.running())
        return sorted(at for observer, at in first.items() if observer in running)

    def time_to_inform(
        self, subject: str, *, since: float, fraction: float = 0.999
    ) -> float | None:
        """Delay after ``since`` until ``fraction`` of the other running nodes knew
        that ``subject`` joined."""
        others = len(self.running()) - 1
        needed = max(1, math.ceil(fraction * others - 1e-9))
        times = self.informed_times(subject, since=since)
        return times[needed - 1] if len(times) >= needed else None

    def false_dead_verdicts(self, *, stall_grace: float = 1.0) -> list[Observation]:
        """DEAD verdicts about nodes that were running (not crashed, frozen or left)
        and not stalled at the time, nor stalled less than ``stall_grace`` seconds
        before. Deaths across a partition count: the node was alive. (A stalled node
        is as silent as a frozen one while it lasts: see :class:`StallReport`.)"""
        return [
            o
            for o in self.observations
            if o.kind is EventKind.DEAD
            and not self._was_down(o.subject, o.news_at)
            and not self._was_stalled(o.subject, o.news_at, stall_grace)
        ]

    def stall_dead_verdicts(self, *, stall_grace: float = 1.0) -> list[Observation]:
        """DEAD verdicts about nodes stalled at the time (or less than
        ``stall_grace`` seconds before)."""
        return [
            o
            for o in self.observations
            if o.kind is EventKind.DEAD
            and not self._was_down(o.subject, o.news_at)
            and self._was_stalled(o.subject, o.news_at, stall_grace)
        ]

    def alive_everywhere_at(self, subject: str, *, since: float, until: float) -> float | None:
        """The time by which every running node other than ``subject`` had held it
        alive, looking at ``since .. until``: ``since`` if all did then, else the
        latest first return to alive; None if some node never held it alive in that
        time. (Later doubts, such as a new suspicion, do not count.)"""
        latest = since
        for observer in self.running():
            if observer != subject:
                back = self._alive_again_at(subject, observer, since=since, until=until)
                if back is None:
                    return None
                latest = max(latest, back)
        return latest

    def stall_report(self, *, stall_grace: float = 1.0) -> StallReport:
        """Verdicts and recoveries over every stall so far (see :class:`StallReport`).

        A recovery is measured per observer from the later of the stall's end and
        the observer's own return from a stall (a stalled observer's view cannot
        change), and the slowest observer counts."""
        stall_verdicts = self.stall_dead_verdicts(stall_grace=stall_grace)
        declared = {
            window
            for window in self._stalls
            for o in stall_verdicts
            if o.subject == window.name and window.start <= o.news_at < window.end + stall_grace
        }
        recoveries: list[float] = []
        for window in self._stalls:
            if window.end > self.now:
                continue
            doubted = any(
                window.start <= o.news_at < window.end + stall_grace
                and o.kind in (EventKind.SUSPECT, EventKind.DEAD)
                for o in self._by_subject.get(window.name, ())
            )
            if doubted:
                recoveries.append(self._recovery(window))
        return StallReport(
            stalls=list(self._stalls),
            false_verdicts=self.false_dead_verdicts(stall_grace=stall_grace),
            stall_verdicts=stall_verdicts,
            stalls_declared_dead=len(declared),
            recoveries=recoveries,
        )

    def _recovery(self, window: StallWindow) -> float:
        """Seconds after ``window`` until its node was alive in every running node's
        view (inf if not before its next stall or now)."""
        until = min(
            [w.start for w in self._stalls if w.name == window.name and w.start > window.end]
            + [self.now]
        )
        slowest = 0.0
        for observer in self.running():
            if observer == window.name:
                continue
            if self._was_stalled(observer, until, 0.0):
                continue  # its view is frozen until after the period we look at
            back = self._alive_again_at(window.name, observer, since=window.end, until=until)
            if back is None:
                return math.inf
            ready = max(
                [window.end]
                + [
                    w.end
                    for w in self._stalls
                    if w.name == observer and w.start < back and w.end > window.start
                ]
            )
            slowest = max(slowest, back - ready)
        return slowest

    def _alive_again_at(
        self, subject: str, observer: str, *, since: float, until: float
    ) -> float | None:
        """The first time in ``since .. until`` at which ``observer`` held
        ``subject`` alive (``since`` if it did then); None if it never did."""
        alive = True
        for observation in self._by_subject.get(subject, ()):
            if observation.observer != observer or observation.at > until:
                continue
            kind = observation.kind
            if kind is EventKind.META_UPDATED:
                continue
            now_alive = kind in (EventKind.JOINED, EventKind.ALIVE)
            if observation.at <= since:
                alive = now_alive
            elif not alive and now_alive:
                return observation.at
            elif alive:
                return since
        return since if alive else None

    def joined_at(self, name: str) -> float:
        """When ``name`` was last started (and asked to join)."""
        return self._joined_at[name]

    def reset_traffic(self) -> None:
        for node in self._nodes.values():
            node.messages_sent = 0
            node.bytes_sent = 0
        self._traffic_since = self.now

    def traffic(self) -> Traffic:
        """Messages and bytes sent by running nodes since the last reset."""
        nodes = [self._nodes[name] for name in self.running()]
        return Traffic(
            messages=sum(n.messages_sent for n in nodes),
            bytes=sum(n.bytes_sent for n in nodes),
            seconds=self.now - self._traffic_since,
            nodes=len(nodes),
        )

    # --- machinery ----------------------------------------------------------------------

    def _new_name(self) -> str:
        name = node_name(self._next_index)
        self._next_index += 1
        return name

    @staticmethod
    def address_of(name: str) -> str:
        """The gossip address of simulated node ``name``."""
        return f"{name}.sim:7946"

    def _node(self, name: str) -> _SimNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise SimulationError(f"no simulated node named {name!r}") from None

    def _random_running(self, count: int, *, exclude: str | None = None) -> list[str]:
        candidates = [name for name in self.running() if name != exclude]
        return self._rng.sample(candidates, min(count, len(candidates)))

    def _was_down(self, name: str, at: float) -> bool:
        return any(start <= at < end for start, end in self._gone.get(name, ()))

    def _was_stalled(self, name: str, at: float, grace: float) -> bool:
        return any(w.name == name and w.start <= at < w.end + grace for w in self._stalls)

    def _start_node(
        self,
        name: str,
        *,
        seeds: Sequence[str] | None = None,
        initial_members: Iterable[Member] = (),
        incarnation: int = 0,
    ) -> None:
        node = self._nodes.get(name)
        if node is None:
            node = _SimNode(name, self.address_of(name))
            self._nodes[name] = node
            self._by_address[node.address] = node
        node.generation += 1
        node.stalled_until = -math.inf
        node.backlog.clear()
        node.machine = Membership(
            name,
            node.address,
            config=self.config,
            rng=random.Random(f"node:{self.seed}:{name}:{node.generation}"),
            now=self.now,
            incarnation=incarnation,
            initial_members=initial_members,
            on_event=lambda event: self._observe(name, event),
        )
        self._joined_at[name] = self.now
        self.network.attach(
            node.address, lambda message, sender: self._deliver(node, message, sender)
        )
        self._send(node, node.machine.join(seeds or [], self.now))
        node.wake_at = math.inf
        self._reschedule(node)

    def _observe(self, observer: str, event: MembershipEvent) -> None:
        observation = Observation(
            event.at, observer, event.member.name, event.kind, heard_at=self._heard_at
        )
        self.observations.append(observation)
        self._by_subject_kind.setdefault((observation.subject, event.kind), []).append(observation)
        self._by_subject.setdefault(observation.subject, []).append(observation)

    def _refused(self, source: str, destination: str) -> None:
        node = self._by_address.get(source)
        if node is None or node.machine is None:
            return
        if self.now < node.stalled_until:
            return  # a stalled transport notices nothing; the probe times out later
        self._send(node, node.machine.report_refused(destination, self.now))
        self._reschedule(node)

    def _deliver(self, node: _SimNode, message: Message, sender: str) -> None:
        machine = node.machine
        if machine is None:
            return
        if self.now < node.stalled_until:
            node.backlog.append((message, sender, self.now))
            return
        self._send(node, machine.receive(message, sender, self.now))
        self._reschedule(node)

    def _resume(self, node: _SimNode, generation: int, stalled_for: float) -> None:
        machine = node.machine
        if machine is None or node.generation != generation or self.now < node.stalled_until:
            return
        if self.report_stall_lag:
            machine.report_loop_lag(stalled_for)
        backlog, node.backlog = node.backlog, []
        if not self.backlog_first:
            self._send(node, machine.tick(self.now))
        for message, sender, arrived_at in backlog:
            self._heard_at = arrived_at
            try:
                self._send(node, machine.receive(message, sender, self.now))
            finally:
                self._heard_at = None
        self._send(node, machine.tick(self.now))
        node.wake_at = math.inf
        self._reschedule(node)

    def _wake(self, node: _SimNode, generation: int, at: float) -> None:
        machine = node.machine
        if machine is None or node.generation != generation or node.wake_at != at:
            return
        node.wake_at = math.inf
        if self.now < node.stalled_until:
            return  # _resume ticks it
        self._send(node, machine.tick(self.now))
        self._reschedule(node)

    def _reschedule(self, node: _SimNode) -> None:
        machine = node.machine
        if machine is None:
            return
        at = max(machine.next_deadline(), self.now)
        if at < node.wake_at and at != math.inf:
            node.wake_at = at
            generation = node.generation
            self.network.schedule(at, lambda: self._wake(node, generation, at))

    def _send(self, node: _SimNode, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            node.messages_sent += 1
            if self.measure_bytes:
                node.bytes_sent += encoded_size(item.message)
            self.network.send(node.address, item.destination, item.message)
