"""Whole clusters on the simulated network: convergence, failure detection, false
positives under stalls and loss, partitions, leave, restart, metadata, push-pull.

All seeded and deterministic; times are simulated, never asserted against a wall
clock (performance lives in tests/bench/bench_gossip_sim.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from murmur.node.gossip import (
    Alive,
    EventKind,
    GossipConfig,
    LinkModel,
    MemberState,
    Message,
    Simulation,
)
from murmur.node.gossip.simulation import node_name


def suspicions(sim: Simulation) -> int:
    return sum(1 for o in sim.observations if o.kind is EventKind.SUSPECT)


def test_fifty_nodes_joining_one_seed_converge() -> None:
    sim = Simulation(50, seed=1, converged=False)
    sim.run_until(10)
    assert sim.is_converged()
    assert all(len(sim.view(name)) == 50 for name in sim.names())
    assert all(sim.machine(name).joined for name in sim.names())


def crash_detection_times(sim: Simulation, victims: list[str]) -> list[float]:
    """Crash each victim in turn; seconds until every live node saw it dead."""
    sim.run_until(5)
    times = []
    for victim in victims:
        crashed_at = sim.now
        sim.crash(victim)
        sim.run_for(60)
        seen = sim.seen_by_all_at(victim, EventKind.DEAD, since=crashed_at)
        assert seen is not None, f"not every live node saw {victim} dead"
        times.append(round(seen - crashed_at, 3))
    return times


VICTIMS = [node_name(3), node_name(17), node_name(30)]


def test_every_killed_process_is_seen_dead_by_every_live_node_soon_after_its_port_refuses(
    record_property: Callable[[str, object], None],
) -> None:
    # A killed process on a live host refuses connections: the fast path applies
    # from the first message anyone sends it.
    sim = Simulation(32, seed=2)
    times = crash_detection_times(sim, VICTIMS)
    record_property("killed_process_to_everyone_dead_s", times)
    config = GossipConfig()
    assert all(t < 2 * config.probe_interval + config.refused_suspicion_timeout for t in times)
    assert sim.false_dead_verdicts() == []
    assert sim.is_converged()


def test_every_silent_crash_is_seen_dead_by_every_live_node(
    record_property: Callable[[str, object], None],
) -> None:
    # A host that vanished answers nothing: only the suspicion timeout decides.
    sim = Simulation(32, seed=2, refuse_when_down=False)
    times = crash_detection_times(sim, VICTIMS)
    record_property("silent_crash_to_everyone_dead_s", times)
    # A probe must fail, then confirming probes: two probe intervals at the least.
    assert all(t > 2 * GossipConfig().probe_interval * 0.9 for t in times)
    assert sim.false_dead_verdicts() == []
    assert sim.is_converged()


def test_cpu_stalls_of_two_to_five_seconds_on_ten_percent_of_nodes_kill_no_running_node() -> None:
    # More in test_gossip_silent_failures.py; this one at N=50.
    sim = Simulation(50, seed=3, measure_bytes=False)
    rng = random.Random(3)
    stallers = rng.sample(sim.names(), 5)
    stalls = sim.stall_repeatedly(stallers, until=300, rng=rng)
    assert len(stalls) > 50
    assert suspicions(sim) > 0, "the stalls should have caused suspicions to refute"
    report = sim.stall_report()
    assert report.false_verdicts == []
    assert max(report.recoveries) < 1.0
    sim.run_for(5)  # the last stalls end
    assert sim.is_converged()


def test_five_percent_message_loss_kills_nobody() -> None:
    sim = Simulation(50, seed=4, link=LinkModel(loss_rate=0.05), measure_bytes=False)
    sim.run_until(300)
    assert suspicions(sim) > 0, "the loss should have caused suspicions to refute"
    assert sim.false_dead_verdicts() == []
    assert sim.is_converged()


def test_a_stalled_node_is_suspected_and_refutes_with_a_higher_incarnation() -> None:
    sim = Simulation(20, seed=5)
    sim.run_until(5)
    victim = node_name(7)
    sim.stall(victim, 2.0)
    sim.run_for(10)
    assert sim.seen_by_all_at(victim, EventKind.SUSPECT, since=5) is not None
    incarnation = sim.machine(victim).incarnation
    assert incarnation > 0
    for name in sim.running():
        member = sim.machine(name).member(victim)
        assert member is not None
        assert (member.state, member.incarnation) == (MemberState.ALIVE, incarnation)
    assert sim.false_dead_verdicts() == []


def test_a_partition_splits_the_views_and_healing_joins_them_again() -> None:
    sim = Simulation(30, seed=6)
    sim.run_until(5)
    majority, minority = sim.names()[:20], sim.names()[20:]
    sim.partition([majority, minority])
    sim.run_for(60)
    assert all(sim.view(a).get(minority[0]) in (MemberState.DEAD, None) for a in majority)
    assert all(sim.view(b).get(majority[0]) in (MemberState.DEAD, None) for b in minority)
    sim.heal()
    sim.run_for(60)
    assert sim.is_converged()


def test_a_long_partition_heals_after_tombstones_are_forgotten() -> None:
    sim = Simulation(12, seed=7, measure_bytes=False)
    sim.run_until(5)
    left, right = sim.names()[:6], sim.names()[6:]
    sim.partition([left, right])
    sim.run_for(120)
    assert all(sim.view(a).get(right[0]) is None for a in left), "tombstones should be gone"
    sim.heal()
    sim.run_for(90)
    assert sim.is_converged()


def test_a_graceful_leave_is_seen_as_left_not_dead() -> None:
    sim = Simulation(20, seed=8)
    sim.run_until(5)
    leaver = node_name(4)
    sim.leave(leaver)
    sim.run_for(5)
    assert sim.seen_by_all_at(leaver, EventKind.LEFT, since=5) is not None
    assert not [o for o in sim.observations if o.subject == leaver and o.kind is EventKind.DEAD]
    assert sim.machine(leaver).pending_broadcasts == 0
    assert sim.is_converged()


def test_a_stale_alive_cannot_resurrect_the_dead_but_a_restart_rejoins() -> None:
    sim = Simulation(20, seed=9)
    sim.run_until(5)
    victim = node_name(11)
    sim.crash(victim)
    sim.run_for(30)
    assert all(sim.view(name)[victim] is MemberState.DEAD for name in sim.running())

    # A delayed Alive of the dead node's last life reaches everyone.
    stale = Alive(victim, 0, sim.address_of(victim))
    from murmur.node.gossip import Gossip

    for name in sim.running():
        sim.network.send(sim.address_of(node_name(0)), sim.address_of(name), Gossip((stale,)))
    sim.run_for(1)
    assert all(sim.view(name)[victim] is MemberState.DEAD for name in sim.running())

    restarted_at = sim.now
    sim.restart(victim)  # incarnation 0 again: it must learn to outbid its last life
    sim.run_for(5)
    assert sim.machine(victim).incarnation > 0
    assert sim.seen_by_all_at(victim, EventKind.JOINED, since=restarted_at) is not None
    assert sim.is_converged()


def test_removing_a_dead_node_marks_it_left_everywhere_and_a_live_one_is_untouched() -> None:
    sim = Simulation(20, seed=12)
    sim.run_until(5)
    victim, live = node_name(7), node_name(8)
    sim.crash(victim)
    sim.run_for(30)
    assert all(sim.view(name)[victim] is MemberState.DEAD for name in sim.running())

    removed_at = sim.now
    sim.force_leave(node_name(0), victim)
    sim.force_leave(node_name(0), live)  # alive: refused, nothing is sent about it
    sim.run_for(5)
    assert sim.seen_by_all_at(victim, EventKind.LEFT, since=removed_at) is not None
    assert all(sim.view(name)[live] is MemberState.ALIVE for name in sim.running())
    assert not sim.false_dead_verdicts()

    # A removed server that is started again is welcome back.
    back_at = sim.now
    sim.restart(victim)
    sim.run_for(5)
    assert sim.seen_by_all_at(victim, EventKind.JOINED, since=back_at) is not None
    assert sim.is_converged()


def test_metadata_updates_spread_and_the_owners_newest_version_wins() -> None:
    sim = Simulation(30, seed=10)
    sim.run_until(5)
    owner = node_name(2)
    sim.update_meta(owner, b"gpus=8 load=0")
    sim.run_for(0.5)
    sim.update_meta(owner, b"gpus=8 load=3")
    sim.run_for(8)  # metadata rides on probe traffic only: a few seconds to reach 30 nodes
    # An old announcement arriving late changes nothing.
    from murmur.node.gossip import Gossip

    old = Alive(owner, 0, sim.address_of(owner), b"gpus=8 load=0", 1)
    for name in sim.running():
        sim.network.send(sim.address_of(node_name(0)), sim.address_of(name), Gossip((old,)))
    sim.run_for(1)
    for name in sim.running():
        member = sim.machine(name).member(owner)
        assert member is not None
        assert (member.meta, member.meta_version) == (b"gpus=8 load=3", 2)


def test_push_pull_repairs_a_node_that_missed_the_gossip() -> None:
    sim = Simulation(20, seed=11)
    sim.run_until(5)
    owner, deaf = node_name(1), node_name(2)
    deaf_address = sim.address_of(deaf)

    def carries_owner_news(source: str, destination: str, message: Message) -> bool:
        updates = getattr(message, "updates", ())
        return destination == deaf_address and any(u.name == owner for u in updates)

    sim.network.add_filter(carries_owner_news)
    sim.update_meta(owner, b"new catalog")
    sim.run_for(3)
    assert all(
        sim.machine(name).member(owner).meta == b"new catalog"  # type: ignore[union-attr]
        for name in sim.running()
        if name != deaf
    )
    assert sim.machine(deaf).member(owner).meta == b""  # type: ignore[union-attr]
    sim.run_for(2 * GossipConfig().push_pull_interval)
    assert sim.machine(deaf).member(owner).meta == b"new catalog"  # type: ignore[union-attr]


def test_a_thousand_nodes_learn_of_a_join_and_the_joiner_learns_them() -> None:
    sim = Simulation(1000, seed=12, measure_bytes=False)
    sim.run_until(1)
    joined_at = sim.now
    newcomer = sim.add_node()
    sim.run_for(4)
    informed = sim.time_to_inform(newcomer, since=joined_at, fraction=0.999)
    assert informed is not None
    assert len(sim.machine(newcomer).members()) == 1001
    assert sim.is_converged()


def test_the_same_seed_replays_the_same_run() -> None:
    def run(seed: int) -> list[tuple[float, str, str, EventKind]]:
        sim = Simulation(15, seed=seed, link=LinkModel(loss_rate=0.02))
        sim.run_until(3)
        sim.crash(node_name(5))
        sim.stall(node_name(6), 3)
        sim.run_for(30)
        return [(o.at, o.observer, o.subject, o.kind) for o in sim.observations]

    assert run(13) == run(13)
    assert run(13) != run(14)


def test_simulation_refuses_impossible_requests() -> None:
    from murmur.node.gossip import SimulationError

    sim = Simulation(3, seed=1)
    with pytest.raises(SimulationError, match="no simulated node"):
        sim.crash("nobody")
    with pytest.raises(SimulationError, match="running"):
        sim.restart(node_name(0))
    sim.crash(node_name(0))
    with pytest.raises(SimulationError, match="down"):
        sim.stall(node_name(0), 1)
