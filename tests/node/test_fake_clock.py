"""The fake clock of the simulators (node/fake_clock.py): actions in time order,
ties in the order they were scheduled; and the gossip and Raft simulations on one
clock, deterministic together."""

from __future__ import annotations

from murmur.node.control.raft.simulation import RaftSimulation
from murmur.node.fake_clock import FakeClock
from murmur.node.gossip import EventKind
from murmur.node.gossip.simulation import Observation, Simulation


def test_actions_run_in_time_order_and_ties_in_scheduling_order() -> None:
    clock = FakeClock()
    ran: list[tuple[float, str]] = []

    def note(what: str) -> None:
        ran.append((clock.now, what))

    clock.schedule(2.0, lambda: note("late"))
    clock.schedule(1.0, lambda: note("first"))
    clock.schedule(1.0, lambda: note("second"))
    clock.run_until(1.5)

    assert ran == [(1.0, "first"), (1.0, "second")]
    assert clock.now == 1.5
    assert clock.pending == 1
    clock.run_for(1.0)
    assert ran[-1] == (2.0, "late")
    assert clock.now == 2.5


def test_a_past_time_runs_now_and_what_an_action_schedules_runs_in_the_same_call() -> None:
    clock = FakeClock(start=10.0)
    ran: list[tuple[float, str]] = []

    def chain() -> None:
        ran.append((clock.now, "chain"))
        clock.schedule(clock.now + 0.5, lambda: ran.append((clock.now, "chained")))

    clock.schedule(3.0, chain)
    clock.run_until(11.0)

    assert ran == [(10.0, "chain"), (10.5, "chained")]
    clock.run_until(5.0)
    assert clock.now == 11.0, "the clock never goes back"


def run_both(seed: int) -> tuple[list[Observation], list[tuple[float, int, str]], float]:
    clock = FakeClock()
    gossip = Simulation(8, seed=seed, clock=clock)
    raft = RaftSimulation(3, seed=seed, clock=clock)
    clock.run_for(3.0)
    gossip.crash("node-0002")
    raft.crash(raft.leader() or "node-0")
    clock.run_for(10.0)
    assert gossip.now == raft.now == clock.now == 13.0
    return list(gossip.observations), list(raft.elections), clock.now


def test_a_gossip_and_a_raft_simulation_share_one_clock_and_replay_exactly() -> None:
    observations, elections, _ = run_both(seed=4)

    assert len(elections) >= 2, "a first leader, and another after it crashed"
    assert any(o.subject == "node-0002" and o.kind is EventKind.DEAD for o in observations)
    assert run_both(seed=4) == (observations, elections, 13.0)


def test_a_simulation_starts_at_its_clocks_time() -> None:
    clock = FakeClock(start=100.0)
    raft = RaftSimulation(3, seed=1, clock=clock)
    gossip = Simulation(3, seed=1, clock=clock)

    assert raft.run_until_leader(within=10.0) is not None
    assert raft.elections[0][0] > 100.0
    assert gossip.joined_at("node-0000") == 100.0
    gossip.run_for(2.0)
    assert gossip.is_converged()
