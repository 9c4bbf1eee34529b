"""What a Raft machine says of the leader (what ``murmur status`` shows): the leader
it names is always the one that led its current term, never one of an older term,
and none while it stands in an election. And a lone voter elects itself, however
it came to be alone."""

from __future__ import annotations

import random

import pytest

from murmur.node.control.raft import ElectionConfig, RaftSimulation, Role
from murmur.node.gossip.simulation import LinkModel

SAMPLE_EVERY = 0.002
"""Simulated seconds between two looks at every machine: far below a heartbeat
(0.1 s), so a wrong pairing would be seen before the next message could mend it."""

RUN_SECONDS = 20.0
"""Simulated seconds of faults in each run."""


def wrong_pairings(sim: RaftSimulation) -> list[str]:
    """Every running machine whose named leader did not lead its current term, or
    that names one while it stands."""
    found = []
    for name in sim.running():
        machine = sim.machine(name)
        leader, term = machine.leader, machine.term
        if leader is None:
            if machine.role is Role.LEADER:
                found.append(f"t={sim.now:.3f}: {name} leads term {term} but names no leader")
            continue
        if machine.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            found.append(f"t={sim.now:.3f}: {name} stands in term {term} but names {leader}")
        if leader not in sim.leaders_by_term.get(term, set()):
            found.append(f"t={sim.now:.3f}: {name} names {leader} for term {term} it did not lead")
    return found


def watched_run(seed: int) -> tuple[list[str], int]:
    """Random leader kills, restarts, partitions and loss for ``RUN_SECONDS``,
    looking at every machine all along; returns what was wrong and the elections."""
    rng = random.Random(f"leader-terms:{seed}")
    link = LinkModel(loss_rate=rng.choice((0.0, 0.05, 0.2)), reorder_rate=rng.choice((0.0, 0.2)))
    config = ElectionConfig(pre_vote=rng.random() < 0.7)
    sim = RaftSimulation(rng.choice((3, 3, 5)), config, seed=seed, link=link)
    wrong: list[str] = []
    next_fault = 0.0
    while sim.now < RUN_SECONDS:
        sim.run_for(SAMPLE_EVERY)
        wrong += wrong_pairings(sim)
        if sim.now < next_fault:
            continue
        next_fault = sim.now + rng.expovariate(1 / 0.3)
        running = sim.running()
        down = [name for name in sorted(sim.members) if name not in running]
        roll = rng.random()
        if roll < 0.4 and (leader := sim.leader()) is not None and len(down) < 2:
            sim.crash(leader)
        elif roll < 0.7 and down:
            sim.restart(rng.choice(down))
        elif roll < 0.8:
            members = sorted(sim.members)
            cut = rng.randint(1, len(members))
            sim.partition([members[:cut], members[cut:]])
        elif roll < 0.9:
            sim.heal()
        elif (leader := sim.leader()) is not None:
            sim.propose(b"x")
    return wrong + sim.violations, len(sim.elections)


@pytest.mark.parametrize("first", range(0, 40, 10))
def test_a_named_leader_always_led_the_term_it_is_named_with(first: int) -> None:
    elections = 0
    for seed in range(first, first + 10):
        wrong, count = watched_run(seed)
        assert wrong == [], f"seed {seed}: {wrong[:5]}"
        elections += count
    assert elections > 10 * 10  # leaders were killed and replaced, many times


def test_a_follower_forgets_the_leader_when_its_term_moves_on() -> None:
    sim = RaftSimulation(3, ElectionConfig(pre_vote=False), seed=3)
    assert sim.run_until_leader(within=3.0) is not None
    leader = sim.stable_leader()
    assert leader is not None
    term = sim.machine(leader).term
    sim.crash(leader)
    follower = next(name for name in sim.running())
    while sim.machine(follower).term == term:
        assert sim.machine(follower).leader in (leader, None)
        sim.run_for(SAMPLE_EVERY)
    # From the first moment of the new term, the dead leader is no longer named.
    assert sim.machine(follower).leader != leader
    assert sim.machine(follower).term > term


# --- a lone voter ------------------------------------------------------------------------


def two_voters(seed: int) -> tuple[RaftSimulation, str, str]:
    sim = RaftSimulation(2, seed=seed)
    assert sim.run_until_leader(within=3.0) is not None
    leader = sim.stable_leader()
    assert leader is not None
    (other,) = [name for name in sim.names if name != leader]
    return sim, leader, other


def test_the_voter_a_leader_leaves_alone_by_removing_itself_elects_itself() -> None:
    sim, leader, other = two_voters(seed=5)
    assert sim.change_voters(frozenset({other})) is not None
    sim.run_for(2.0)
    assert sim.leaders() == [other]
    assert sim.machine(other).voters == {other}
    assert sim.machine(leader).leader == other
    assert sim.violations == []


def test_a_leader_that_removed_the_other_voter_leads_alone_and_again_after_a_restart() -> None:
    sim, leader, other = two_voters(seed=6)
    assert sim.change_voters(frozenset({leader})) is not None
    sim.run_for(0.5)
    sim.crash(other)
    sim.run_for(2.0)
    assert sim.leaders() == [leader]  # a lone voter needs nobody's answer to keep leading
    term = sim.machine(leader).term
    sim.crash(leader)
    sim.restart(leader)
    sim.run_for(0.0)
    assert sim.leaders() == [leader]  # at its first tick
    assert sim.machine(leader).term == term + 1
    assert sim.violations == []


def test_the_survivor_of_two_voters_elects_nobody_and_still_lists_the_dead_one() -> None:
    # What an operator met after `node remove` of one of three voters and the loss of
    # a second: not a lone voter but half of two. `murmur status` must say so (voters
    # gpu2 (dead), vm), not list the survivor alone as if it should lead.
    sim, leader, other = two_voters(seed=7)
    sim.crash(leader)
    sim.run_for(5.0)
    assert sim.leaders() == []
    survivor = sim.machine(other)
    assert survivor.voters == {leader, other}
    assert survivor.leader is None
