"""A deterministic, in-memory cluster of election state machines on a fake clock.

The same seed replays the same run exactly. Faults: message delay (every message
draws its own, so messages reorder), loss, extra reordering, crashes, restarts and
partitions. A node keeps a simulated disk: after every call to its machine, and
before the messages that call returned leave, the machine's
:attr:`~node.election.machine.Election.persistent` state is written there (the
persistence contract). A crash loses everything else; a restart builds a fresh
machine from the disk and the node's log position.

The simulation also checks, as it runs, what the election promises, and records
any breach in :attr:`ElectionSimulation.violations`:

- election safety: at most one node ever leads in a term;
- one vote per term: a node never grants votes to two candidates in one term,
  across restarts;
- up-to-date leaders: a new leader's log is at least as up to date as the logs
  of a majority of voters (compared at the moment it wins; meaningful while logs
  change only between elections, as in the randomized tests, which keep them
  fixed);
- quorum lease: after every step, a leader heard answers of its term from a
  majority of voters (itself included) within ``lease_timeout``, as counted on
  the wire by the simulation, not by the machine.

Default link: loopback-like, 0.3 ms one way plus an exponential jitter of mean
0.2 ms, as in the gossip simulation. ``link`` is an attribute; replacing it
mid-run changes the network from then on (a test heals a lossy network that way).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from node.election.config import ElectionConfig
from node.election.errors import ElectionError
from node.election.machine import NEW_NODE, Election, PersistentState
from node.election.messages import (
    EMPTY_LOG,
    HeartbeatResponse,
    LogPosition,
    Message,
    Outgoing,
    VoteResponse,
)
from node.gossip.simulation import LinkModel


class ElectionSimulationError(ElectionError):
    """A simulation was asked for something impossible (unknown node, ...)."""


@dataclass(slots=True)
class _SimNode:
    name: str
    log: LogPosition
    disk: PersistentState = NEW_NODE
    machine: Election | None = None  # None while crashed
    generation: int = 0
    wake_at: float = math.inf
    heard: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Sender -> (term, time) of the last vote grant or accepted heartbeat answer
    this node received: the simulation's own count of a leader's contacts."""


def voter_name(index: int) -> str:
    return f"voter-{index}"


class ElectionSimulation:
    """``n_voters`` election machines on one simulated network.

    Args:
        n_voters: voters, all started at time 0 as followers.
        config: every node's election config.
        seed: the run's only source of randomness.
        link: the default link model (loopback-like unless given).
        logs: each voter's log position (default: all empty).
        persistent: each voter's saved term and vote at the start (default: term
            0, no vote).
    """

    def __init__(
        self,
        n_voters: int,
        config: ElectionConfig | None = None,
        seed: int = 0,
        *,
        link: LinkModel | None = None,
        logs: Mapping[str, LogPosition] | None = None,
        persistent: Mapping[str, PersistentState] | None = None,
    ) -> None:
        if n_voters < 1:
            raise ElectionSimulationError("a simulation needs at least one voter")
        self.config = config or ElectionConfig()
        self.seed = seed
        self.now = 0.0
        self.link = link or LinkModel()
        self._rng = random.Random(f"election-network:{seed}")
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0
        self._group_of: dict[str, int] | None = None
        self.voters = tuple(voter_name(index) for index in range(n_voters))
        self._nodes = {
            name: _SimNode(
                name,
                (logs or {}).get(name, EMPTY_LOG),
                (persistent or {}).get(name, NEW_NODE),
            )
            for name in self.voters
        }
        self.leaders_by_term: dict[int, set[str]] = {}
        self.elections: list[tuple[float, int, str]] = []
        """(time, term, leader) each time a node became leader."""
        self.messages_sent = 0
        self.violations: list[str] = []
        self._grants: dict[tuple[str, int], set[str]] = {}
        for name in self.voters:
            self._start(self._nodes[name])

    # --- time ---------------------------------------------------------------------

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at`` (ties in scheduling order)."""
        self._order += 1
        heapq.heappush(self._queue, (max(at, self.now), self._order, action))

    def run_until(self, until: float) -> None:
        """Run every event up to ``until``, then set the clock to ``until``."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            at, _, action = heapq.heappop(queue)
            self.now = at
            action()
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_leader(self, *, within: float, step: float = 0.01) -> float | None:
        """Run until some running node leads with a majority of running voters
        following it in its term; returns the time, or None after ``within``."""
        deadline = self.now + within
        while self.now < deadline:
            if self.stable_leader() is not None:
                return self.now
            self.run_until(min(deadline, self.now + step))
        return self.now if self.stable_leader() is not None else None

    # --- faults -------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Kill the node: it stops at once; its disk (term, vote, log) survives."""
        node = self._node(name)
        node.machine = None
        node.wake_at = math.inf
        node.heard.clear()

    def restart(self, name: str, *, lose_disk: bool = False) -> None:
        """Start a crashed node again from its disk, as a follower.

        ``lose_disk`` starts it from term 0 with no vote instead: a node that broke
        the persistence contract. Tests use it to show that the checks notice.
        """
        node = self._node(name)
        if node.machine is not None:
            raise ElectionSimulationError(f"{name} is running; crash it before restarting it")
        if lose_disk:
            node.disk = NEW_NODE
        self._start(node)

    def partition(self, groups: Iterable[Collection[str]]) -> None:
        """Only nodes in the same group can talk; nodes in no group talk to no one.
        Messages already in flight across the cut are lost when they arrive."""
        self._group_of = {}
        for index, group in enumerate(groups):
            for name in group:
                self._group_of[name] = index

    def heal(self) -> None:
        self._group_of = None

    def set_log(self, name: str, position: LogPosition) -> None:
        """The node's log now ends at ``position`` (kept across crashes)."""
        node = self._node(name)
        node.log = position
        if node.machine is not None:
            node.machine.update_log(position)

    # --- observers ----------------------------------------------------------------

    def running(self) -> list[str]:
        return [name for name, node in self._nodes.items() if node.machine is not None]

    def machine(self, name: str) -> Election:
        machine = self._node(name).machine
        if machine is None:
            raise ElectionSimulationError(f"{name} is down")
        return machine

    def disk(self, name: str) -> PersistentState:
        return self._node(name).disk

    def leaders(self) -> list[str]:
        """Running nodes that believe they lead."""
        return [
            name
            for name, node in self._nodes.items()
            if node.machine is not None and node.machine.is_leader
        ]

    def stable_leader(self) -> str | None:
        """The running leader that a majority of voters (itself included) follow in
        its term, if there is one."""
        quorum = self.config.quorum(len(self.voters))
        for name in self.leaders():
            term = self.machine(name).term
            followers = sum(
                1
                for other in self.running()
                if self.machine(other).term == term and self.machine(other).leader == name
            )
            if followers >= quorum:
                return name
        return None

    # --- machinery ----------------------------------------------------------------

    def _node(self, name: str) -> _SimNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise ElectionSimulationError(f"no simulated node named {name!r}") from None

    def _can_talk(self, source: str, destination: str) -> bool:
        if self._group_of is None:
            return True
        group = self._group_of.get(source)
        return group is not None and group == self._group_of.get(destination)

    def _start(self, node: _SimNode) -> None:
        node.generation += 1
        node.heard.clear()
        node.machine = Election(
            node.name,
            self.voters,
            config=self.config,
            rng=random.Random(f"election-node:{self.seed}:{node.name}:{node.generation}"),
            now=self.now,
            persistent=node.disk,
            log=node.log,
        )
        node.wake_at = math.inf
        self._after_step(node, [])

    def _deliver(self, destination: str, source: str, message: Message) -> None:
        if not self._can_talk(source, destination):
            return
        node = self._nodes[destination]
        machine = node.machine
        if machine is None:
            return
        if (isinstance(message, VoteResponse) and message.granted) or (
            isinstance(message, HeartbeatResponse) and message.accepted
        ):
            node.heard[source] = (message.term, self.now)
        self._after_step(node, machine.receive(message, self.now))

    def _wake(self, node: _SimNode, generation: int, at: float) -> None:
        machine = node.machine
        if machine is None or node.generation != generation or node.wake_at != at:
            return
        node.wake_at = math.inf
        self._after_step(node, machine.tick(self.now))

    def _after_step(self, node: _SimNode, outgoing: list[Outgoing]) -> None:
        machine = node.machine
        if machine is None:
            return
        node.disk = machine.persistent  # before anything leaves: the contract
        self._check(node, machine, outgoing)
        for item in outgoing:
            self._send(node.name, item)
        at = max(machine.next_deadline(), self.now)
        if at < node.wake_at and at != math.inf:
            node.wake_at = at
            generation = node.generation
            self.schedule(at, lambda: self._wake(node, generation, at))

    def _send(self, source: str, item: Outgoing) -> None:
        self.messages_sent += 1
        if not self._can_talk(source, item.destination):
            return
        delay = self.link.delay(self._rng)
        if delay is None:
            return
        destination, message = item.destination, item.message
        self.schedule(self.now + delay, lambda: self._deliver(destination, source, message))

    def _check(self, node: _SimNode, machine: Election, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            message = item.message
            if isinstance(message, VoteResponse) and message.granted:
                granted = self._grants.setdefault((node.name, message.term), set())
                granted.add(item.destination)
                if len(granted) > 1:
                    self.violations.append(
                        f"t={self.now:.3f}: {node.name} voted for {sorted(granted)} "
                        f"in term {message.term}"
                    )
        if not machine.is_leader:
            return
        term = machine.term
        leaders = self.leaders_by_term.setdefault(term, set())
        if node.name not in leaders:
            leaders.add(node.name)
            self.elections.append((self.now, term, node.name))
            if len(leaders) > 1:
                self.violations.append(
                    f"t={self.now:.3f}: term {term} has leaders {sorted(leaders)}"
                )
            behind_or_equal = sum(1 for other in self._nodes.values() if other.log <= machine.log)
            if behind_or_equal < self.config.quorum(len(self.voters)):
                self.violations.append(
                    f"t={self.now:.3f}: {node.name} leads term {term} with log "
                    f"{machine.log}, behind a majority"
                )
        since = self.now - self.config.lease_timeout
        contacts = 1 + sum(
            1
            for other, (heard_term, heard_at) in node.heard.items()
            if other != node.name and heard_term == term and heard_at >= since
        )
        if contacts < self.config.quorum(len(self.voters)):
            self.violations.append(
                f"t={self.now:.3f}: {node.name} leads term {term} with {contacts} "
                f"contacts within the lease"
            )


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
        sim = ElectionSimulation(n_voters, config, seed=seed * 1_000_003 + trial, link=link)
        if sim.run_until_leader(within=give_up_after) is None:
            raise ElectionSimulationError(f"trial {trial}: no first leader")
        sim.run_for(phases.uniform(0.5, 1.5))
        leader = sim.stable_leader()
        if leader is None:
            raise ElectionSimulationError(f"trial {trial}: the first leader did not last")
        killed_at = sim.now
        elections_before = len(sim.elections)
        sim.crash(leader)
        deadline = killed_at + give_up_after
        while len(sim.elections) == elections_before and sim.now < deadline:
            sim.run_until(min(deadline, sim.now + 0.05))
        new = sim.elections[elections_before:]
        times.append(new[0][0] - killed_at if new else math.inf)
    return times
