"""Withheld candidacy (``Raft.set_candidacy``): what a node whose state machine cannot
apply the log (it must be upgraded) does in Raft. It never leads, and stops leading
at once; it still stores, acknowledges and votes, so the cluster keeps its quorum."""

from __future__ import annotations

import math
import random

from murmur.node.control.raft import ElectionConfig, Raft, RaftSimulation, Role, bootstrap_entry


def test_a_leader_that_withholds_its_candidacy_steps_down_and_never_leads_again() -> None:
    sim = RaftSimulation(3, seed=7)
    assert sim.run_until_leader(within=5.0) is not None
    first = sim.stable_leader()
    assert first is not None
    sim.machine(first).set_candidacy(False, sim.now)
    assert sim.machine(first).role is Role.FOLLOWER
    assert not sim.machine(first).candidacy
    sim.run_for(1.0)
    for _ in range(20):  # elections come and go; it never wins one
        sim.run_for(0.5)
        assert first not in sim.leaders()
    assert sim.stable_leader() not in (None, first)
    assert not sim.violations


def test_its_acknowledgements_still_commit() -> None:
    sim = RaftSimulation(3, seed=11)
    assert sim.run_until_leader(within=5.0) is not None
    leader = sim.stable_leader()
    assert leader is not None
    withheld, third = (name for name in sim.names if name != leader)
    sim.machine(withheld).set_candidacy(False, sim.now)
    sim.crash(third)
    proposal = sim.propose(b"with-one-peer")
    assert proposal is not None
    sim.run_for(1.0)
    assert proposal in {ack.proposal for ack in sim.acknowledged}
    assert not sim.violations


def test_its_vote_still_elects_another() -> None:
    # A cluster with one node to upgrade survives its leader's death: the other node
    # is elected with the withheld node's vote.
    sim = RaftSimulation(3, seed=5)
    assert sim.run_until_leader(within=5.0) is not None
    leader = sim.stable_leader()
    assert leader is not None
    withheld, third = (name for name in sim.names if name != leader)
    sim.machine(withheld).set_candidacy(False, sim.now)
    sim.crash(leader)
    assert sim.run_until_leader(within=10.0) is not None
    assert sim.stable_leader() == third
    assert not sim.violations


def test_candidacy_given_back_lets_it_stand_again() -> None:
    machine = Raft(
        "solo",
        config=ElectionConfig(),
        rng=random.Random(1),
        now=0.0,
        entries=(bootstrap_entry("solo"),),
    )
    machine.tick(0.0)
    assert machine.is_leader
    machine.set_candidacy(False, 1.0)
    assert machine.role is Role.FOLLOWER
    assert math.isinf(machine.next_deadline())  # a lone voter that may not lead: none
    machine.set_candidacy(True, 2.0)
    machine.tick(machine.next_deadline())
    assert machine.is_leader
