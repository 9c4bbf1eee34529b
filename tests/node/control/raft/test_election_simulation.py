"""Scenarios on the simulated cluster: elections, failover, partitions, restarts,
replication, compaction and voter changes."""

from __future__ import annotations

import pytest

from murmur.node.control.raft import ElectionConfig, RaftSimulation, commit_latencies
from murmur.node.gossip.simulation import LinkModel

CONFIG = ElectionConfig()


def settled(sim: RaftSimulation) -> str:
    assert sim.run_until_leader(within=3.0) is not None
    leader = sim.stable_leader()
    assert leader is not None
    return leader


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        sim = RaftSimulation(5, seed=11)
        sim.run_for(1.0)
        for number in range(20):
            sim.propose(b"%d" % number)
            sim.run_for(0.01)
        runs.append((sim.elections, sim.messages_sent, sim.commands("node-0")))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("voters", [1, 2, 3, 5])
def test_a_cluster_elects_one_leader_and_keeps_it(voters: int) -> None:
    sim = RaftSimulation(voters, seed=voters)
    leader = settled(sim)
    sim.run_for(30.0)
    assert sim.leaders() == [leader]
    assert len(sim.elections) == 1
    assert sim.violations == []


def test_lone_voter_leads_at_time_zero() -> None:
    sim = RaftSimulation(1)
    sim.run_until(0.0)
    assert sim.leaders() == ["node-0"]
    assert sim.disk("node-0").term == 1


def test_commands_commit_and_every_node_applies_the_same_sequence() -> None:
    sim = RaftSimulation(3, seed=1)
    settled(sim)
    proposals = [sim.propose(b"%d" % number) for number in range(50)]
    sim.run_for(1.0)
    assert len(sim.acknowledged) == 50
    expected = [(p.index, p.term, p.data) for p in proposals if p is not None]
    for name in sim.names:
        assert sim.commands(name) == expected
    assert sim.violations == []


def test_killed_leader_is_replaced_within_the_election_timeouts() -> None:
    sim = RaftSimulation(3, seed=2)
    old = settled(sim)
    sim.run_for(1.0)
    killed_at = sim.now
    sim.crash(old)
    at = sim.run_until_leader(within=5.0, step=0.001)
    assert at is not None
    assert at - killed_at <= CONFIG.election_timeout_max + 0.05
    assert sim.stable_leader() != old
    assert sim.violations == []


def test_leader_in_a_minority_steps_down_and_the_majority_elects_another() -> None:
    sim = RaftSimulation(5, seed=3)
    old = settled(sim)
    others = [name for name in sim.names if name != old]
    old_term = sim.machine(old).term
    sim.partition([{old, others[0]}, set(others[1:])])
    sim.run_for(CONFIG.lease_timeout + 0.01)
    assert not sim.machine(old).is_leader
    new = settled(sim)
    assert new in others[1:]
    assert sim.machine(new).term > old_term
    sim.run_for(10.0)
    assert set(sim.leaders()) == {new}  # the minority never leads again while cut off
    assert sim.settle(within=5.0) is not None
    assert sim.violations == []


def test_without_pre_vote_an_isolated_follower_deposes_the_leader_on_return() -> None:
    sim = RaftSimulation(3, ElectionConfig(pre_vote=False), seed=4)
    leader = settled(sim)
    loner = next(name for name in sim.names if name != leader)
    sim.partition([{loner}, set(sim.names) - {loner}])
    sim.run_for(5.0)
    assert sim.machine(loner).term > sim.machine(leader).term  # no pre-vote: it kept standing
    assert sim.stable_leader() == leader
    sim.heal()
    assert sim.run_until_leader(within=3.0) is not None
    assert sim.violations == []


def test_with_pre_vote_an_isolated_follower_rejoins_without_disruption() -> None:
    sim = RaftSimulation(3, seed=4)
    leader = settled(sim)
    term = sim.machine(leader).term
    loner = next(name for name in sim.names if name != leader)
    sim.partition([{loner}, set(sim.names) - {loner}])
    sim.run_for(5.0)
    assert sim.machine(loner).term == term  # it asked, nobody answered, it stayed put
    sim.heal()
    sim.run_for(3.0)
    assert sim.stable_leader() == leader
    assert sim.machine(leader).term == term
    assert sim.machine(loner).leader == leader
    assert sim.violations == []


def test_a_voter_with_a_stale_log_never_wins() -> None:
    for seed in range(10):
        sim = RaftSimulation(3, seed=seed)
        leader = settled(sim)
        stale = next(name for name in sim.names if name != leader)
        sim.partition([{stale}, set(sim.names) - {stale}])
        for number in range(5):
            sim.propose(b"%d" % number)
        sim.run_for(0.5)
        sim.heal()
        sim.crash(leader)
        sim.run_for(5.0)
        assert all(name != stale for _, term, name in sim.elections if term > 1), seed
        assert sim.violations == []


def test_restart_keeps_term_vote_and_log_from_disk() -> None:
    sim = RaftSimulation(3, seed=5)
    leader = settled(sim)
    sim.propose(b"x")
    sim.run_for(0.5)
    follower = next(name for name in sim.names if name != leader)
    saved = sim.disk(follower)
    last = sim.machine(follower).last_log
    sim.crash(follower)
    sim.restart(follower)
    machine = sim.machine(follower)
    assert (machine.term, machine.voted_for) == (saved.term, saved.voted_for)
    assert machine.last_log == last
    assert machine.leader is None
    sim.run_for(1.0)
    assert machine.leader == leader
    assert sim.commands(follower) == sim.commands(leader)


def test_a_node_that_lags_behind_the_compacted_log_gets_the_snapshot() -> None:
    sim = RaftSimulation(3, seed=6)
    leader = settled(sim)
    lagging = next(name for name in sim.names if name != leader)
    sim.crash(lagging)
    for number in range(30):
        sim.propose(b"%d" % number)
    sim.run_for(0.5)
    assert sim.compact(leader)
    assert sim.machine(leader).first_index > 2
    sim.restart(lagging)
    sim.run_for(1.0)
    assert sim.commands(lagging) == sim.commands(leader)
    assert sim.machine(lagging).first_index == sim.machine(leader).first_index
    sim.crash(lagging)  # and it restarts from the snapshot it saved
    sim.restart(lagging)
    assert sim.commands(lagging) == sim.commands(leader)
    assert sim.violations == []


def test_quorum_lost_to_crashes_deposes_the_leader() -> None:
    sim = RaftSimulation(3, seed=6)
    leader = settled(sim)
    for name in sim.names:
        if name != leader:
            sim.crash(name)
    sim.run_for(CONFIG.lease_timeout + 0.01)
    assert sim.leaders() == []
    sim.run_for(10.0)
    assert sim.leaders() == []  # one of three cannot elect itself


def test_elects_and_commits_under_loss_and_reordering() -> None:
    link = LinkModel(
        base_delay=0.002, jitter=0.005, loss_rate=0.2, reorder_rate=0.2, reorder_delay=0.05
    )
    sim = RaftSimulation(5, seed=7, link=link)
    assert sim.run_until_leader(within=10.0) is not None
    for number in range(30):
        sim.propose(b"%d" % number)
        sim.run_for(0.05)
    sim.run_for(5.0)
    assert sim.acknowledged
    assert sim.settle(within=5.0) is not None
    assert sim.violations == []


def test_a_spare_joins_as_a_learner_and_is_promoted_then_removed() -> None:
    sim = RaftSimulation(1, seed=8, spares=2)
    leader = settled(sim)
    for number in range(10):
        sim.propose(b"%d" % number)
    sim.join("node-1")
    sim.join("node-2")
    sim.run_for(1.0)
    assert sim.machine(leader).learners == {"node-1", "node-2"}
    assert sim.commands("node-1") == sim.commands(leader)
    assert sim.machine("node-1").next_deadline() == float("inf")  # a learner never stands
    assert sim.change_voters(frozenset({leader, "node-1"})) is not None
    sim.run_for(0.5)
    assert sim.change_voters(frozenset({leader, "node-1", "node-2"})) is not None
    sim.run_for(0.5)
    assert sim.machine("node-2").voters == {leader, "node-1", "node-2"}
    # The leader removes itself, steps down once that commits, and the others elect.
    assert sim.change_voters(frozenset({"node-1", "node-2"})) is not None
    sim.run_for(3.0)
    new = sim.stable_leader()
    assert new in {"node-1", "node-2"}
    assert not sim.machine(leader).is_leader
    assert sim.settle(within=5.0) is not None
    assert sim.violations == []


def test_commit_takes_about_one_round_trip() -> None:
    latencies = sorted(commit_latencies(500, rate=1000.0, seed=1))
    assert len(latencies) == 500
    # Loopback link: ~0.5 ms one way; a batch goes out as soon as the last is answered.
    assert latencies[len(latencies) // 2] < 0.005
