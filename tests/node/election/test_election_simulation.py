"""Scenarios on the simulated cluster: elections, failover, partitions, restarts."""

from __future__ import annotations

import pytest

from node.election import ElectionConfig, ElectionSimulation, LogPosition, PersistentState
from node.gossip.simulation import LinkModel

CONFIG = ElectionConfig()


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        sim = ElectionSimulation(5, seed=11)
        sim.run_for(3.0)
        runs.append((sim.elections, sim.messages_sent))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("voters", [1, 2, 3, 5])
def test_a_cluster_elects_one_leader_and_keeps_it(voters: int) -> None:
    sim = ElectionSimulation(voters, seed=voters)
    assert sim.run_until_leader(within=2.0) is not None
    leader = sim.stable_leader()
    sim.run_for(30.0)
    assert sim.leaders() == [leader]
    assert len(sim.elections) == 1
    assert sim.violations == []


def test_lone_voter_leads_at_time_zero() -> None:
    sim = ElectionSimulation(1)
    sim.run_until(0.0)
    assert sim.leaders() == ["voter-0"]
    assert sim.disk("voter-0") == PersistentState(1, "voter-0")


def test_killed_leader_is_replaced_within_the_election_timeouts() -> None:
    sim = ElectionSimulation(3, seed=2)
    sim.run_until_leader(within=2.0)
    old = sim.stable_leader()
    assert old is not None
    sim.run_for(1.0)
    killed_at = sim.now
    sim.crash(old)
    at = sim.run_until_leader(within=5.0, step=0.001)
    assert at is not None
    assert at - killed_at <= CONFIG.election_timeout_max + 0.05
    assert sim.stable_leader() != old
    assert sim.violations == []


def test_leader_in_a_minority_steps_down_and_the_majority_elects_another() -> None:
    sim = ElectionSimulation(5, seed=3)
    sim.run_until_leader(within=2.0)
    old = sim.stable_leader()
    assert old is not None
    others = [name for name in sim.voters if name != old]
    old_term = sim.machine(old).term
    sim.partition([{old, others[0]}, set(others[1:])])
    sim.run_for(CONFIG.lease_timeout + 0.01)
    assert not sim.machine(old).is_leader
    assert sim.run_until_leader(within=3.0) is not None
    new = sim.stable_leader()
    assert new in others[1:]
    assert sim.machine(new).term > old_term
    # The minority never leads again while cut off.
    sim.run_for(10.0)
    assert set(sim.leaders()) == {new}
    sim.heal()
    assert sim.run_until_leader(within=3.0) is not None
    sim.run_for(2.0)
    assert len(sim.leaders()) == 1
    assert sim.violations == []


def test_without_pre_vote_an_isolated_follower_deposes_the_leader_on_return() -> None:
    sim = ElectionSimulation(3, ElectionConfig(pre_vote=False), seed=4)
    sim.run_until_leader(within=2.0)
    leader = sim.stable_leader()
    loner = next(name for name in sim.voters if name != leader)
    sim.partition([{loner}, set(sim.voters) - {loner}])
    sim.run_for(5.0)
    assert sim.machine(loner).term > sim.machine(leader).term  # no pre-vote: it kept standing
    assert sim.stable_leader() == leader
    sim.heal()
    assert sim.run_until_leader(within=3.0) is not None
    assert sim.violations == []


def test_a_voter_with_a_stale_log_never_wins() -> None:
    logs = {
        "voter-0": LogPosition(1, 2),
        "voter-1": LogPosition(2, 7),
        "voter-2": LogPosition(2, 7),
    }
    for seed in range(20):
        sim = ElectionSimulation(3, seed=seed, logs=logs)
        sim.run_until_leader(within=5.0)
        sim.crash(sim.stable_leader() or "voter-1")
        sim.run_for(5.0)
        assert all(leader != "voter-0" for _, _, leader in sim.elections), seed
        assert sim.violations == []


def test_restart_keeps_term_and_vote_from_disk() -> None:
    sim = ElectionSimulation(3, seed=5)
    sim.run_until_leader(within=2.0)
    leader = sim.stable_leader()
    assert leader is not None
    follower = next(name for name in sim.voters if name != leader)
    saved = sim.disk(follower)
    sim.crash(follower)
    sim.restart(follower)
    assert sim.machine(follower).persistent == saved
    assert sim.machine(follower).leader is None
    sim.run_for(1.0)
    assert sim.machine(follower).leader == leader


def test_quorum_lost_to_crashes_deposes_the_leader() -> None:
    sim = ElectionSimulation(3, seed=6)
    sim.run_until_leader(within=2.0)
    leader = sim.stable_leader()
    assert leader is not None
    for name in sim.voters:
        if name != leader:
            sim.crash(name)
    sim.run_for(CONFIG.lease_timeout + 0.01)
    assert sim.leaders() == []
    sim.run_for(10.0)
    assert sim.leaders() == []  # one of three cannot elect itself


def test_elects_under_loss_and_reordering() -> None:
    link = LinkModel(
        base_delay=0.002, jitter=0.005, loss_rate=0.2, reorder_rate=0.2, reorder_delay=0.05
    )
    sim = ElectionSimulation(5, seed=7, link=link)
    assert sim.run_until_leader(within=10.0) is not None
    sim.run_for(20.0)
    assert sim.violations == []


def test_with_pre_vote_an_isolated_follower_rejoins_without_disruption() -> None:
    sim = ElectionSimulation(3, seed=4)
    sim.run_until_leader(within=2.0)
    leader = sim.stable_leader()
    assert leader is not None
    term = sim.machine(leader).term
    loner = next(name for name in sim.voters if name != leader)
    sim.partition([{loner}, set(sim.voters) - {loner}])
    sim.run_for(5.0)
    assert sim.machine(loner).term == term  # it asked, nobody answered, it stayed put
    sim.heal()
    sim.run_for(3.0)
    assert sim.stable_leader() == leader
    assert sim.machine(leader).term == term
    assert sim.machine(loner).leader == leader
    assert sim.violations == []
