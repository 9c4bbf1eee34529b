"""The soak's faults: a seeded schedule, its driver, and the record of when each node
was down.

Kinds: kill -9 of the leader or of a follower (restarted on its data dir after a
pause), a stall (SIGSTOP for 2-5 s, then SIGCONT) of the leader or a follower, and
(where network namespaces exist) a partition that cuts a minority off. The
schedule is endless and made of cycles, each holding every kind once in a seeded
order; the first cycle is always played to its end (past the end of the load if
need be), so even a one-minute soak sees each kind. One fault at a time; after its
repair the live nodes must agree on a leader again within a bound.

One node, the *witness* (the last), is never killed, so that one daemon's RSS,
open files, threads and tasks can be followed over the whole soak. When the leader
is to be killed and the witness leads, the witness is first stopped until the
others elect a leader (a stall of the leader that outlasts an election), then
resumed, and the new leader is killed.
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.chaos.cluster import ChaosCluster
from tests.chaos.history import FaultEvent
from tests.soak.pacing import Bounds, Pacing
from tests.soak.workload import pause_unless

DEPOSE_WITHIN_SECONDS = 20.0
"""How long the witness stays stopped, at most, for the others to elect a leader."""


class FaultKind(enum.Enum):
    KILL_LEADER = "kill-leader"
    KILL_FOLLOWER = "kill-follower"
    STALL_LEADER = "stall-leader"
    STALL_FOLLOWER = "stall-follower"
    PARTITION = "partition"


@dataclass(frozen=True)
class FaultPlan:
    kind: FaultKind
    pause: float
    """Seconds down (kill), stopped (stall) or cut off (partition)."""
    pick: int
    """Which of the candidate nodes (modulo their count)."""
    with_leader: bool = False
    """A partition's minority holds the leader."""
    size: int = 1
    """A partition's minority: 1, or 1-2 of 5."""


def fault_kinds(*, partitions: bool) -> list[FaultKind]:
    return [k for k in FaultKind if partitions or k is not FaultKind.PARTITION]


def fault_plans(
    rng: random.Random, *, partitions: bool, nodes: int, pacing: Pacing
) -> Iterator[FaultPlan]:
    """Endless cycles; each holds every kind once, in a seeded order."""
    kinds = fault_kinds(partitions=partitions)
    while True:
        cycle = list(kinds)
        rng.shuffle(cycle)
        for kind in cycle:
            if kind in (FaultKind.KILL_LEADER, FaultKind.KILL_FOLLOWER):
                pause = rng.uniform(*pacing.kill_seconds)
            elif kind is FaultKind.PARTITION:
                pause = rng.uniform(*pacing.partition_seconds)
            else:
                pause = rng.uniform(2.0, 5.0)
            yield FaultPlan(
                kind=kind,
                pause=round(pause, 1),
                pick=rng.randrange(1 << 16),
                with_leader=rng.random() < 0.5,
                size=rng.choice((1, 2)) if nodes >= 5 else 1,
            )


@dataclass
class DownWindow:
    node: str
    why: str
    """killed | stopped | cut off"""
    since: float
    until: float | None = None
    led_up_to: int = 0
    """The highest term the node had led when it went down (killed or stopped)."""


@dataclass
class Downtime:
    """When each node was down, and why (Unix times)."""

    windows: list[DownWindow] = field(default_factory=list)

    def begin(self, node: str, why: str, at: float, led_up_to: int = 0) -> DownWindow:
        window = DownWindow(node, why, at, led_up_to=led_up_to)
        self.windows.append(window)
        return window

    def covering(self, node: str, start: float, end: float) -> DownWindow | None:
        """A window in which ``node`` was killed or stopped from ``start`` to ``end``."""
        for window in reversed(self.windows):
            if window.node != node or window.why == "cut off":
                continue
            if window.since <= start and (window.until is None or window.until >= end):
                return window
        return None

    def is_down(self, node: str) -> bool:
        return any(w.node == node and w.until is None for w in self.windows)

    def quiet_since(self, node: str, now: float) -> float:
        """The end of the node's last down time; ``now`` while it is down."""
        last = 0.0
        for window in self.windows:
            if window.node != node:
                continue
            if window.until is None:
                return now
            last = max(last, window.until)
        return last


class FaultDriver:
    """Plays fault plans one at a time against ``cluster``."""

    def __init__(
        self,
        cluster: ChaosCluster,
        *,
        downtime: Downtime,
        led_up_to: Callable[[str], int],
        witness: str,
        bounds: Bounds,
        say: Callable[[str], None],
    ) -> None:
        self._cluster = cluster
        self._downtime = downtime
        self._led_up_to = led_up_to
        self.witness = witness
        self._bounds = bounds
        self._say = say
        self.counts: Counter[str] = Counter()
        self.events: list[FaultEvent] = []
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.stopped: dict[str, DownWindow] = {}
        self._cut: dict[str, DownWindow] = {}
        self._killed: dict[str, DownWindow] = {}
        self.recoveries: list[float] = []
        """Seconds from each repair until the live nodes agreed on a leader."""

    def unavailable(self) -> set[str]:
        """Nodes the soak cannot reach now: killed, stopped or cut off."""
        return {*self._killed, *self.stopped, *self._cut}

    async def run(
        self,
        plans: Iterator[FaultPlan],
        stop: asyncio.Event,
        rng: random.Random,
        gap: tuple[float, float],
        *,
        at_least: int,
    ) -> None:
        """Plays ``plans`` until ``stop``, and at least ``at_least`` of them."""
        played = 0
        while True:
            stopped = await pause_unless(stop, rng.uniform(*gap))
            if stopped and played >= at_least:
                return
            await self.play(next(plans))
            played += 1

    async def play(self, plan: FaultPlan) -> None:
        agreed = await self._cluster.wait_agreed(within=30)
        if agreed is None:
            self.notes.append(f"{plan.kind.value} skipped: no agreed leader within 30 s")
            return
        leader = agreed[0]
        others = sorted(n for n in self._cluster.names if n != leader)
        if plan.kind is FaultKind.KILL_LEADER:
            if leader == self.witness:
                leader = await self._depose(leader)
                if not leader:
                    return
            await self._kill(leader, plan.pause, role="leader")
        elif plan.kind is FaultKind.KILL_FOLLOWER:
            candidates = [n for n in others if n != self.witness]
            await self._kill(candidates[plan.pick % len(candidates)], plan.pause, role="follower")
        elif plan.kind is FaultKind.STALL_LEADER:
            await self._stall(leader, plan.pause, role="leader")
        elif plan.kind is FaultKind.STALL_FOLLOWER:
            await self._stall(others[plan.pick % len(others)], plan.pause, role="follower")
        else:
            minority = [leader] if plan.with_leader else []
            while len(minority) < plan.size:
                minority.append(others[(plan.pick + len(minority)) % len(others)])
            await self._partition(minority, plan.pause)
        await self._await_agreement(plan.kind.value)

    async def repair_all(self) -> None:
        """Every stopped node resumed, the network healed, every killed node restarted."""
        self.resume_stopped()
        if self._cut:
            self._heal()
        for name in list(self._killed):
            await self._restart(name)

    def resume_stopped(self) -> None:
        """SIGCONT to every node the soak stopped (never leave one stopped behind)."""
        for name in list(self.stopped):
            self._resume(name)

    # -- faults ---------------------------------------------------------------------

    async def _kill(self, name: str, pause: float, *, role: str) -> None:
        await asyncio.to_thread(self._cluster.kill, name)
        now = time.time()
        self._killed[name] = self._downtime.begin(name, "killed", now, self._led_up_to(name))
        self.events.append(FaultEvent(now, 0, "kill", (name,), role))
        self.counts[f"kill_{role}"] += 1
        self._say(f"  fault: kill -9 {role} {name} for {pause:.1f} s")
        await asyncio.sleep(pause)
        await self._restart(name)

    async def _restart(self, name: str) -> None:
        window = self._killed.pop(name)
        window.until = time.time()
        self.events.append(FaultEvent(window.until, 0, "restart", (name,)))
        try:
            await asyncio.to_thread(self._cluster.restart, name)
        except (RuntimeError, TimeoutError) as exc:
            self.violations.append(f"{name} did not restart: {str(exc)[:500]}")
            await asyncio.sleep(2.0)
            await asyncio.to_thread(self._cluster.restart, name)

    async def _stall(self, name: str, seconds: float, *, role: str) -> None:
        self._stop(name, detail=role)
        self.counts["stall"] += 1
        self._say(f"  fault: SIGSTOP {role} {name} for {seconds:.1f} s")
        await asyncio.sleep(seconds)
        self._resume(name)

    async def _depose(self, witness: str) -> str:
        """Stops the leading witness until the others agree on a leader; returns that
        leader, or "" when they did not within ``DEPOSE_WITHIN_SECONDS``."""
        self._stop(witness, detail="deposed")
        self.counts["stall"] += 1
        began = time.monotonic()
        others = [n for n in self._cluster.reachable() if n not in self.stopped]
        try:
            agreed = await self._cluster.wait_agreed(
                others, within=DEPOSE_WITHIN_SECONDS, not_leader=witness
            )
        finally:
            self._resume(witness)
        self._say(
            f"  fault: SIGSTOP leader {witness} (witness) until the others elected "
            f"{agreed[0] if agreed else 'nobody'} ({time.monotonic() - began:.1f} s)"
        )
        if agreed is None:
            self.notes.append(f"no leader elected with {witness} stopped; leader kill skipped")
            return ""
        after = await self._cluster.wait_agreed(within=30)
        if after is None or after[0] == witness:
            self.notes.append(f"{witness} led again after its stall; leader kill skipped")
            return ""
        return after[0]

    def _stop(self, name: str, *, detail: str) -> None:
        pid = self._cluster.nodes[name].process.pid
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)
        now = time.time()
        self.stopped[name] = self._downtime.begin(name, "stopped", now, self._led_up_to(name))
        self.events.append(FaultEvent(now, 0, "stop", (name,), detail))

    def _resume(self, name: str) -> None:
        window = self.stopped.pop(name)
        window.until = time.time()
        os.kill(self._cluster.nodes[name].process.pid, signal.SIGCONT)
        self.events.append(FaultEvent(window.until, 0, "continue", (name,)))

    async def _partition(self, minority: list[str], seconds: float) -> None:
        self._cluster.partition(minority)
        now = time.time()
        for name in minority:
            self._cut[name] = self._downtime.begin(name, "cut off", now)
        self.events.append(FaultEvent(now, 0, "partition", tuple(minority)))
        self.counts["partition"] += 1
        self._say(f"  fault: cut {','.join(minority)} off for {seconds:.1f} s")
        await asyncio.sleep(seconds)
        self._heal()

    def _heal(self) -> None:
        self._cluster.heal()
        now = time.time()
        for window in self._cut.values():
            window.until = now
        self.events.append(FaultEvent(now, 0, "heal", tuple(self._cut)))
        self._cut.clear()

    async def _await_agreement(self, what: str) -> None:
        began = time.monotonic()
        agreed = await self._cluster.wait_agreed(within=self._bounds.agreement_seconds)
        if agreed is None:
            self.violations.append(
                f"after {what}, the live nodes did not agree on a leader within "
                f"{self._bounds.agreement_seconds:g} s"
            )
            return
        self.recoveries.append(time.monotonic() - began)


def _wait_stopped(pid: int, within: float = 2.0) -> None:
    """Until the kernel has stopped ``pid`` (state T): its log is then complete."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            return
        if data[data.rfind(b")") + 2 :].startswith(b"T"):
            return
        time.sleep(0.01)
