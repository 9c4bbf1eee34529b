"""A deterministic, in-memory cluster of Raft machines on a fake clock
(:class:`~murmur.node.fake_clock.FakeClock`, the gossip simulation's too), checking
Raft's safety properties as it runs.

The same seed replays the same run exactly. Faults: message delay (every message
draws its own, so messages reorder), loss, extra reordering, crashes, restarts,
restores (a new disk without Raft state, as ``murmur node restore`` leaves it) and
partitions. Each node has a simulated disk (term and vote, snapshot, entries),
written from every :class:`~murmur.node.control.raft.raft.Ready` before its messages leave
(the persistence contract); a crash loses everything else, and a restart builds a
fresh machine from the disk. The state machine is the list of applied commands
(index, term, data), rebuilt from the snapshot on restart; ``compact(name)`` makes
a snapshot of it.

Nodes are ``node-0``, ``node-1``...: the first ``n_voters`` start as the voters
(their logs hold one VOTERS entry naming them all, as :func:`bootstrap_entry` does
for one); the ``spares`` after them start only when they ``join`` as learners. The
simulation plays the caller's part for membership: whoever leads is told to
replicate to every member that is not a voter (a removed voter stays a learner).

Checks, recorded in :attr:`RaftSimulation.violations`:

- election safety: at most one node ever leads in a term;
- one vote per term: a node never grants votes to two candidates in one term,
  across restarts;
- log matching: two entries with the same index and term are the same entry and
  follow entries of the same term (so, by induction, logs agree up to them);
- leader completeness: a new leader's log holds every entry applied anywhere;
- state-machine safety: every node applies the same entry at an index, and each
  node applies indexes one after another (from its snapshot on);
- acknowledged commands (the leader applied them, at the index and term
  ``propose`` returned) are what every node applies at that index;
- quorum lease: after every step, a leader heard answers of its term from a
  majority of its voters (itself included when a voter) within ``lease_timeout``,
  as counted on the wire by the simulation, not by the machine.

:meth:`RaftSimulation.settle` heals everything and checks liveness: a leader, a new
command committed, and every member applying the same sequence.

Default link: loopback-like, 0.3 ms one way plus an exponential jitter of mean
0.2 ms, as in the gossip simulation. ``link`` is an attribute; replacing it
mid-run changes the network from then on.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from murmur.node.control.raft.config import ElectionConfig
from murmur.node.control.raft.errors import ElectionError, NotLeaderError, VoterChangeError
from murmur.node.control.raft.messages import (
    EMPTY_LOG,
    AppendResponse,
    EntryKind,
    LogEntry,
    LogPosition,
    Message,
    Outgoing,
    Snapshot,
    VoteResponse,
)
from murmur.node.control.raft.raft import NEW_NODE, PersistentState, Raft, Ready
from murmur.node.fake_clock import FakeClock
from murmur.node.gossip.simulation import LinkModel

Command = tuple[int, int, bytes]
"""An applied command: (index, term, data)."""


class RaftSimulationError(ElectionError):
    """A simulation was asked for something impossible (unknown node, ...)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """A command a client gave the leader ``node``, and where it went in its log."""

    node: str
    index: int
    term: int
    data: bytes
    at: float


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A proposal its leader reported committed, at ``at``."""

    proposal: Proposal
    at: float


@dataclass(slots=True)
class _Disk:
    hard_state: PersistentState = NEW_NODE
    snapshot: Snapshot | None = None
    entries: list[LogEntry] = field(default_factory=list)
    """The entries after the snapshot, in order."""
    rejoining: bool = False
    """Restored with its Raft state dropped, not caught up since."""

    def copy(self) -> _Disk:
        return _Disk(self.hard_state, self.snapshot, list(self.entries), self.rejoining)

    @property
    def start(self) -> int:
        return self.snapshot.last.index if self.snapshot is not None else 0

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        if self.snapshot is not None and index == self.snapshot.last.index:
            return self.snapshot.last.term
        offset = index - self.start - 1
        return self.entries[offset].term if 0 <= offset < len(self.entries) else None


@dataclass(slots=True)
class _SimNode:
    name: str
    disk: _Disk = field(default_factory=_Disk)
    machine: Raft | None = None  # None while crashed (or not joined yet)
    generation: int = 0
    wake_at: float = math.inf
    heard: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Sender -> (term, time) of the last vote grant or append answer this node
    received: the simulation's own count of a leader's contacts."""
    commands: list[Command] = field(default_factory=list)
    """The state machine: every command applied, in order."""
    applied: LogPosition = EMPTY_LOG
    applied_voters: frozenset[str] = frozenset()
    proposals: dict[int, Proposal] = field(default_factory=dict)
    """Index -> proposal made here and not yet applied here."""


def node_name(index: int) -> str:
    return f"node-{index}"


def encode_commands(commands: list[Command]) -> bytes:
    return json.dumps([[index, term, data.hex()] for index, term, data in commands]).encode()


def decode_commands(data: bytes) -> list[Command]:
    return [(index, term, bytes.fromhex(text)) for index, term, text in json.loads(data)]


class RaftSimulation:
    """Raft machines on one simulated network.

    Args:
        n_voters: voters, all started at time 0 as followers with one VOTERS entry.
        config: every node's config.
        seed: the run's only source of randomness.
        link: the default link model (loopback-like unless given).
        spares: nodes that start only when they ``join``.
        clock: the simulated time, shared with whatever else runs on it (a gossip
            simulation, say); a new one at 0 unless given. Voters start at its
            current time.
    """

    def __init__(
        self,
        n_voters: int,
        config: ElectionConfig | None = None,
        seed: int = 0,
        *,
        link: LinkModel | None = None,
        spares: int = 0,
        clock: FakeClock | None = None,
    ) -> None:
        if n_voters < 1:
            raise RaftSimulationError("a simulation needs at least one voter")
        self.config = config or ElectionConfig()
        self.seed = seed
        self.clock = clock if clock is not None else FakeClock()
        self.link = link or LinkModel()
        self._rng = random.Random(f"raft-network:{seed}")
        self._group_of: dict[str, int] | None = None
        self.names = tuple(node_name(index) for index in range(n_voters + spares))
        self.first_voters = frozenset(self.names[:n_voters])
        self.members = set(self.first_voters)
        """Nodes that joined: the first voters and every node that ``join``-ed."""
        self._nodes = {name: _SimNode(name) for name in self.names}
        first = LogEntry(0, 1, EntryKind.VOTERS, voters=self.first_voters)
        self.leaders_by_term: dict[int, set[str]] = {}
        self.elections: list[tuple[float, int, str]] = []
        """(time, term, leader) each time a node became leader."""
        self.messages_sent = 0
        self.violations: list[str] = []
        self.acknowledged: list[Acknowledgement] = []
        self._acked: set[Proposal] = set()
        self.applied_at: dict[int, LogEntry] = {}
        """Index -> the entry the first node to apply it applied."""
        self._grants: dict[tuple[str, int], set[str]] = {}
        self._seen: dict[tuple[int, int], tuple[int | None, LogEntry]] = {}
        for name in sorted(self.first_voters):
            self._nodes[name].disk.entries.append(first)
            self._start(self._nodes[name])

    # --- time ---------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at`` (ties in scheduling order)."""
        self.clock.schedule(at, action)

    def run_until(self, until: float) -> None:
        """Run every event up to ``until``, then set the clock to ``until``."""
        self.clock.run_until(until)

    def run_for(self, seconds: float) -> None:
        self.clock.run_for(seconds)

    def run_until_leader(self, *, within: float, step: float = 0.01) -> float | None:
        """Run until some running node leads with a majority of its voters following
        it in its term; returns the time, or None after ``within``."""
        deadline = self.now + within
        while self.now < deadline:
            if self.stable_leader() is not None:
                return self.now
            self.run_until(min(deadline, self.now + step))
        return self.now if self.stable_leader() is not None else None

    # --- faults -------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Kill the node: it stops at once; its disk survives, the rest is lost."""
        node = self._node(name)
        node.machine = None
        node.wake_at = math.inf
        node.heard.clear()
        node.proposals.clear()  # its clients lost their connections

    def restart(self, name: str, *, lose_disk: bool = False) -> None:
        """Start a crashed member again from its disk, as a follower.

        ``lose_disk`` starts it from term 0 with no vote instead (log kept): a node
        that broke the persistence contract. Tests use it to show that the checks
        notice.
        """
        node = self._node(name)
        if node.machine is not None:
            raise RaftSimulationError(f"{name} is running; crash it before restarting it")
        if name not in self.members:
            raise RaftSimulationError(f"{name} has not joined")
        if lose_disk:
            node.disk.hard_state = NEW_NODE
        self._start(node)

    def copy_disk(self, name: str) -> _Disk:
        """A copy of ``name``'s disk as it is now: a backup, for :meth:`restore`."""
        return self._node(name).disk.copy()

    def restore(self, name: str, backup: _Disk | None = None) -> None:
        """Give a crashed member a new disk and start it, as after its disk died.

        Without ``backup``, as ``murmur node restore`` does: no Raft state, and the
        node rejoining (it neither votes nor stands until it has caught up). With
        ``backup`` (from :meth:`copy_disk`), its old Raft state put back as it was:
        tests use it to show that the checks notice what that can break.
        """
        node = self._node(name)
        if node.machine is not None:
            raise RaftSimulationError(f"{name} is running; crash it before restoring it")
        if name not in self.members:
            raise RaftSimulationError(f"{name} has not joined")
        node.disk = backup.copy() if backup is not None else _Disk(rejoining=True)
        self._start(node)

    def rejoining(self, name: str) -> bool:
        """Whether ``name`` was restored and has not caught up since (running or not)."""
        return self._node(name).disk.rejoining

    def partition(self, groups: Iterable[Collection[str]]) -> None:
        """Only nodes in the same group can talk; nodes in no group talk to no one.
        Messages already in flight across the cut are lost when they arrive."""
        self._group_of = {}
        for index, group in enumerate(groups):
            for name in group:
                self._group_of[name] = index

    def heal(self) -> None:
        self._group_of = None

    # --- clients and operators ------------------------------------------------------

    def propose(self, data: bytes) -> Proposal | None:
        """A client gives ``data`` to whoever leads (the newest term's leader); None
        if no running node leads."""
        leader = self.leader()
        if leader is None:
            return None
        node = self._nodes[leader]
        try:
            position = self.machine(leader).propose(data, self.now)
        except NotLeaderError:
            self._step(node, None)
            return None
        proposal = Proposal(leader, position.index, position.term, data, self.now)
        node.proposals[position.index] = proposal
        self._step(node, None)
        return proposal

    def join(self, name: str) -> None:
        """Start a spare with an empty log; leaders replicate to it as a learner."""
        node = self._node(name)
        if name in self.members:
            raise RaftSimulationError(f"{name} has already joined")
        self.members.add(name)
        self._start(node)

    def change_voters(self, voters: frozenset[str]) -> LogPosition | None:
        """Ask the leader to change the voters; None if no leader or it refused."""
        leader = self.leader()
        if leader is None:
            return None
        try:
            position = self.machine(leader).change_voters(voters, self.now)
        except (NotLeaderError, VoterChangeError):
            position = None
        self._step(self._nodes[leader], None)
        return position

    def compact(self, name: str) -> bool:
        """The running node ``name`` snapshots its state machine; False if it has
        applied nothing new since its last snapshot."""
        node = self._node(name)
        machine = self.machine(name)
        if node.applied.index <= node.disk.start:
            return False
        snapshot = Snapshot(node.applied, node.applied_voters, encode_commands(node.commands))
        machine.compact(snapshot)
        disk = node.disk
        del disk.entries[: snapshot.last.index - disk.start]
        disk.snapshot = snapshot
        return True

    # --- observers ----------------------------------------------------------------

    def running(self) -> list[str]:
        return [name for name, node in self._nodes.items() if node.machine is not None]

    def machine(self, name: str) -> Raft:
        machine = self._node(name).machine
        if machine is None:
            raise RaftSimulationError(f"{name} is down")
        return machine

    def disk(self, name: str) -> PersistentState:
        return self._node(name).disk.hard_state

    def commands(self, name: str) -> list[Command]:
        """The commands ``name`` applied (its state machine)."""
        return list(self._node(name).commands)

    def applied_index(self, name: str) -> int:
        return self._node(name).applied.index

    def leaders(self) -> list[str]:
        """Running nodes that believe they lead."""
        return [
            name
            for name, node in self._nodes.items()
            if node.machine is not None and node.machine.is_leader
        ]

    def leader(self) -> str | None:
        """The running node that leads in the newest term, if any."""
        leaders = self.leaders()
        return max(leaders, key=lambda name: self.machine(name).term) if leaders else None

    def stable_leader(self) -> str | None:
        """The running leader that a majority of its voters (itself included when a
        voter) follow in its term, if there is one."""
        for name in self.leaders():
            machine = self.machine(name)
            followers = sum(
                1
                for voter in machine.voters
                if (other := self._nodes[voter].machine) is not None
                and other.term == machine.term
                and other.leader == name
            )
            if followers >= self.config.quorum(len(machine.voters)):
                return name
        return None

    def settle(self, *, within: float, commands: int = 3) -> float | None:
        """Heal the network, restart every member, elect a leader, commit
        ``commands`` new commands and wait until every member applied the same
        sequence. Returns the simulated seconds it took, or None if it did not
        within ``within``; a breach of the end state is recorded as a violation."""
        started = self.now
        deadline = started + within
        self.heal()
        self.link = LinkModel()
        for name in sorted(self.members):
            if self._nodes[name].machine is None:
                self.restart(name)
        acked_before = len(self.acknowledged)
        waiting: Proposal | None = None
        while self.now < deadline:
            leader = self.stable_leader()
            if leader is not None:
                if len(self.acknowledged) - acked_before < commands:
                    if waiting is None or waiting in self._acked or not self._leads(waiting.node):
                        waiting = self.propose(f"settle-{self.now:.3f}".encode())
                else:
                    commit = self.machine(leader).commit_index
                    if all(self._nodes[name].applied.index == commit for name in self.members):
                        self._check_settled()
                        return self.now - started
            self.run_until(min(deadline, self.now + 0.01))
        return None

    # --- machinery ----------------------------------------------------------------

    def _node(self, name: str) -> _SimNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise RaftSimulationError(f"no simulated node named {name!r}") from None

    def _can_talk(self, source: str, destination: str) -> bool:
        if self._group_of is None:
            return True
        group = self._group_of.get(source)
        return group is not None and group == self._group_of.get(destination)

    def _start(self, node: _SimNode) -> None:
        node.generation += 1
        node.heard.clear()
        node.proposals.clear()
        disk = node.disk
        snapshot = disk.snapshot
        node.commands = decode_commands(snapshot.data) if snapshot is not None else []
        node.applied = snapshot.last if snapshot is not None else EMPTY_LOG
        node.applied_voters = snapshot.voters if snapshot is not None else frozenset()
        node.machine = Raft(
            node.name,
            config=self.config,
            rng=random.Random(f"raft-node:{self.seed}:{node.name}:{node.generation}"),
            now=self.now,
            hard_state=disk.hard_state,
            snapshot=snapshot,
            entries=list(disk.entries),
            rejoining=disk.rejoining,
        )
        node.wake_at = math.inf
        self._step(node, None)

    def _deliver(self, destination: str, source: str, message: Message) -> None:
        if not self._can_talk(source, destination):
            return
        node = self._nodes[destination]
        if node.machine is None:
            return
        if (isinstance(message, VoteResponse) and message.granted) or isinstance(
            message, AppendResponse
        ):
            heard = node.heard.get(source)
            if heard is None or heard[0] <= message.term:  # a late answer of an old term
                node.heard[source] = (message.term, self.now)  # does not hide a newer one
        self._step(node, message)

    def _wake(self, node: _SimNode, generation: int, at: float) -> None:
        if node.machine is None or node.generation != generation or node.wake_at != at:
            return
        node.wake_at = math.inf
        node.machine.tick(self.now)
        self._step(node, None)

    def _step(self, node: _SimNode, message: Message | None) -> None:
        """Feed ``message`` (if any), then handle the machine's Ready as the daemon
        must: persist, send, apply."""
        machine = node.machine
        if machine is None:
            return
        if message is not None:
            machine.receive(message, self.now)
        if machine.is_leader:
            for member in sorted(self.members - machine.voters - machine.learners):
                if member != node.name:
                    machine.add_learner(member)
        ready = machine.ready()
        self._persist(node, ready)
        self._check(node, machine, ready.messages)
        for item in ready.messages:
            self._send(node.name, item)
        self._apply(node, ready.committed)
        at = max(machine.next_deadline(), self.now)
        if at < node.wake_at and at != math.inf:
            node.wake_at = at
            generation = node.generation
            self.schedule(at, lambda: self._wake(node, generation, at))

    def _persist(self, node: _SimNode, ready: Ready) -> None:
        disk = node.disk
        if ready.hard_state is not None:
            disk.hard_state = ready.hard_state
        if ready.snapshot is not None:
            snapshot = ready.snapshot
            del disk.entries[: max(0, snapshot.last.index - disk.start)]
            disk.snapshot = snapshot
            node.commands = decode_commands(snapshot.data)
            node.applied = snapshot.last
            node.applied_voters = snapshot.voters
        if ready.truncate_from is not None:
            del disk.entries[max(0, ready.truncate_from - disk.start - 1) :]
        if ready.rejoined:
            disk.rejoining = False
        for entry in ready.entries:
            previous = entry.index - 1
            if previous != disk.start + len(disk.entries):
                self._violation(f"{node.name} appended entry {entry.index} after {previous}")
            key = (entry.index, entry.term)
            record = (disk.term_at(previous), entry)
            if self._seen.setdefault(key, record) != record:
                self._violation(
                    f"log matching: {node.name} holds {record}, another node "
                    f"{self._seen[key]} at {key}"
                )
            disk.entries.append(entry)

    def _apply(self, node: _SimNode, committed: tuple[LogEntry, ...]) -> None:
        for entry in committed:
            if entry.index != node.applied.index + 1:
                self._violation(f"{node.name} applied {entry.index} after {node.applied.index}")
            first = self.applied_at.setdefault(entry.index, entry)
            if first != entry:
                self._violation(
                    f"state machine: {node.name} applied {entry} at {entry.index}, "
                    f"another node {first}"
                )
            if entry.kind is EntryKind.COMMAND:
                node.commands.append((entry.index, entry.term, entry.data))
            elif entry.kind is EntryKind.VOTERS:
                node.applied_voters = entry.voters
            node.applied = entry.position
            proposal = node.proposals.pop(entry.index, None)
            if proposal is not None and proposal.term == entry.term:
                if proposal.data != entry.data:
                    self._violation(f"{node.name} committed {entry} for {proposal}")
                self.acknowledged.append(Acknowledgement(proposal, self.now))
                self._acked.add(proposal)

    def _send(self, source: str, item: Outgoing) -> None:
        self.messages_sent += 1
        if not self._can_talk(source, item.destination):
            return
        delay = self.link.delay(self._rng)
        if delay is None:
            return
        destination, message = item.destination, item.message
        self.schedule(self.now + delay, lambda: self._deliver(destination, source, message))

    def _violation(self, what: str) -> None:
        self.violations.append(f"t={self.now:.3f}: {what} (seed {self.seed})")

    def _check(self, node: _SimNode, machine: Raft, outgoing: tuple[Outgoing, ...]) -> None:
        for item in outgoing:
            message = item.message
            if isinstance(message, VoteResponse) and message.granted:
                granted = self._grants.setdefault((node.name, message.term), set())
                granted.add(item.destination)
                if len(granted) > 1:
                    self._violation(
                        f"{node.name} voted for {sorted(granted)} in term {message.term}"
                    )
        if not machine.is_leader:
            return
        term = machine.term
        leaders = self.leaders_by_term.setdefault(term, set())
        if node.name not in leaders:
            leaders.add(node.name)
            self.elections.append((self.now, term, node.name))
            if len(leaders) > 1:
                self._violation(f"term {term} has leaders {sorted(leaders)}")
            self._check_complete(node)
        voters = machine.voters
        since = self.now - self.config.lease_timeout
        contacts = (node.name in voters) + sum(
            1
            for other, (heard_term, heard_at) in node.heard.items()
            if other in voters and other != node.name and heard_term == term and heard_at >= since
        )
        if contacts < self.config.quorum(len(voters)):
            self._violation(
                f"{node.name} leads term {term} with {contacts} of {len(voters)} voters "
                "heard within the lease"
            )

    def _check_complete(self, node: _SimNode) -> None:
        """Leader completeness: the new leader holds every entry applied anywhere."""
        disk = node.disk
        for index in range(disk.start + 1, max(self.applied_at, default=0) + 1):
            applied = self.applied_at.get(index)
            if applied is not None and disk.term_at(index) != applied.term:
                self._violation(
                    f"leader completeness: {node.name} leads without {applied.position} "
                    f"(it holds term {disk.term_at(index)} there)"
                )
                return

    def _leads(self, name: str) -> bool:
        machine = self._nodes[name].machine
        return machine is not None and machine.is_leader

    def _check_settled(self) -> None:
        """After healing: every member applied the same sequence, holding every
        acknowledged command."""
        reference = max(self.members, key=lambda name: self._nodes[name].applied.index)
        expected = self._nodes[reference].commands
        for name in sorted(self.members):
            if self._nodes[name].commands != expected:
                self._violation(f"{name} applied a different sequence than {reference}")
        held = set(expected)
        for ack in self.acknowledged:
            proposal = ack.proposal
            if (proposal.index, proposal.term, proposal.data) not in held:
                self._violation(f"acknowledged {proposal} is lost")


def failover_times(
    trials: int,
    *,
    n_voters: int = 3,
    config: ElectionConfig | None = None,
    seed: int = 0,
    link: LinkModel | None = None,
    give_up_after: float = 30.0,
) -> list[float]:
    """Simulated seconds from killing a settled leader to the next leader, per trial.

    Each trial is its own seeded cluster: it elects a leader, runs a random
    0.5-1.5 s more (so the kill falls anywhere in the heartbeat cycle), kills the
    leader, and times the first election that follows. A trial with no new leader
    within ``give_up_after`` counts as ``math.inf``.
    """
    times: list[float] = []
    phases = random.Random(f"failover:{seed}")
    for trial in range(trials):
        sim = RaftSimulation(n_voters, config, seed=seed * 1_000_003 + trial, link=link)
        if sim.run_until_leader(within=give_up_after) is None:
            raise RaftSimulationError(f"trial {trial}: no first leader")
        sim.run_for(phases.uniform(0.5, 1.5))
        leader = sim.stable_leader()
        if leader is None:
            raise RaftSimulationError(f"trial {trial}: the first leader did not last")
        killed_at = sim.now
        elections_before = len(sim.elections)
        sim.crash(leader)
        deadline = killed_at + give_up_after
        while len(sim.elections) == elections_before and sim.now < deadline:
            sim.run_until(min(deadline, sim.now + 0.05))
        new = sim.elections[elections_before:]
        times.append(new[0][0] - killed_at if new else math.inf)
    return times


def commit_latencies(
    commands: int,
    *,
    rate: float,
    n_voters: int = 3,
    config: ElectionConfig | None = None,
    seed: int = 0,
    link: LinkModel | None = None,
    size: int = 100,
) -> list[float]:
    """Simulated seconds from proposing to the leader's commit, per command.

    A settled cluster gets ``commands`` commands of ``size`` bytes at the leader,
    evenly at ``rate`` per second; those not acknowledged (a leader change) are left
    out. No fsync time is modelled: a real node adds one fsync per batch on the
    leader and on the followers.
    """
    sim = RaftSimulation(n_voters, config, seed=seed, link=link)
    if sim.run_until_leader(within=30.0) is None:
        raise RaftSimulationError("no first leader")
    sim.run_for(0.5)
    data = bytes(size)

    def client() -> None:
        sim.propose(data)

    for number in range(commands):
        sim.schedule(sim.now + number / rate, client)
    sim.run_for(commands / rate + 1.0)
    return [ack.at - ack.proposal.at for ack in sim.acknowledged if ack.proposal.data == data]
