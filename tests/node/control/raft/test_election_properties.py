"""Randomized schedules: 2,000 seeded runs with clients, crashes, restarts,
partitions, loss, reordering, voter changes and compaction, checking Raft's safety
all along and liveness once everything heals.

Safety is checked by :class:`RaftSimulation` after every step of every node (see
its module doc): one leader per term, one vote per node per term across restarts,
log matching, leader completeness, state-machine safety, acknowledged commands
never lost or changed, and leaders that heard from a majority within the lease.
A failing schedule names its seed; ``run_schedule(seed)`` replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from murmur.node.control.raft import ElectionConfig, RaftSimulation
from murmur.node.gossip.simulation import LinkModel

SCHEDULES = 2_000
CHUNK = 200
FAULT_PHASE = 10.0
"""Simulated seconds of random faults in each schedule."""
SETTLE_BOUND = 10.0
"""Simulated seconds after healing within which a leader must commit new commands
and every member apply the same sequence. An election round takes at most one
election timeout (0.8 s) plus a round trip; this leaves room for split votes and
for candidates with stale logs or inflated terms that must first be outvoted."""


@dataclass(slots=True)
class Outcome:
    seed: int
    elections: int
    crashes: int
    partitions: int
    acknowledged: int
    voter_changes: int
    compactions: int
    restored: int
    settled_after: float | None
    violations: list[str]


def run_schedule(seed: int, *, lose_disk: bool = False, restores: bool = False) -> Outcome:
    """One schedule; ``restores``: half the restarts are restores instead (a new
    disk without Raft state, as ``murmur node restore`` leaves it)."""
    rng = random.Random(f"schedule:{seed}")
    voters = rng.choice((1, 2, 3, 3, 3, 4, 5, 5))
    spares = rng.choice((0, 1, 2))
    link = LinkModel(
        base_delay=rng.choice((0.0003, 0.002)),
        jitter=rng.choice((0.0002, 0.005, 0.02)),
        loss_rate=rng.choice((0.0, 0.0, 0.05, 0.2, 0.4)),
        reorder_rate=rng.choice((0.0, 0.1, 0.3)),
        reorder_delay=rng.choice((0.01, 0.1)),
    )
    config = ElectionConfig(
        pre_vote=rng.random() < 0.7,
        max_entries_per_message=rng.choice((2, 8, 512)),
    )
    sim = RaftSimulation(voters, config, seed=seed, link=link, spares=spares)
    crashes = partitions = voter_changes = compactions = restored = 0
    sequence = 0
    while sim.now < FAULT_PHASE:
        sim.run_for(rng.expovariate(1 / 0.1))
        members = sorted(sim.members)
        running = sim.running()
        down = [name for name in members if name not in running]
        roll = rng.random()
        if roll < 0.35:
            for _ in range(rng.randint(1, 8)):
                sequence += 1
                sim.propose(f"{seed}:{sequence}".encode())
        elif roll < 0.45 and running:
            leader = sim.leader()
            # Leaders are killed more often than their share: that is what matters.
            victim = leader if leader is not None and rng.random() < 0.5 else rng.choice(running)
            sim.crash(victim)
            crashes += 1
        elif roll < 0.55 and down:
            if restores and rng.random() < 0.5 and _may_restore(sim):
                sim.restore(rng.choice(down))
                restored += 1
            else:
                sim.restart(rng.choice(down), lose_disk=lose_disk)
        elif roll < 0.63:
            shuffled = rng.sample(members, len(members))
            cut = rng.randint(0, len(members))
            sim.partition([shuffled[:cut], shuffled[cut:]])
            partitions += 1
        elif roll < 0.7:
            sim.heal()
        elif roll < 0.8:
            voter_changes += _change_voters(sim, rng)
        elif roll < 0.9 and running:
            compactions += sim.compact(rng.choice(running))
    # A node that forgets its vote breaks more than safety: no point waiting for it.
    settled_after = None if lose_disk else sim.settle(within=SETTLE_BOUND)
    return Outcome(
        seed=seed,
        elections=len(sim.elections),
        crashes=crashes,
        partitions=partitions,
        acknowledged=len(sim.acknowledged),
        voter_changes=voter_changes,
        compactions=compactions,
        restored=restored,
        settled_after=settled_after,
        violations=sim.violations,
    )


def _may_restore(sim: RaftSimulation) -> bool:
    """Restore one voter at a time, in a cluster of three voters or more: a cluster
    that lost the disks of half its voters cannot elect a leader again (restored
    voters do not vote until a leader has brought them up to date)."""
    leader = sim.leader()
    if leader is None:
        return False
    machine = sim.machine(leader)
    if len(machine.voters) < 3 or machine.voter_change_pending:
        return False
    return not any(sim.rejoining(name) for name in sim.members)


def _change_voters(sim: RaftSimulation, rng: random.Random) -> int:
    """Join a spare, promote a caught-up learner, or remove a voter (it stays a learner)."""
    leader = sim.leader()
    spares = [name for name in sim.names if name not in sim.members]
    if spares and rng.random() < 0.3:
        sim.join(spares[0])
        return 0
    if leader is None:
        return 0
    machine = sim.machine(leader)
    caught_up = [
        name
        for name in sorted(machine.learners)
        if machine.match_index(name) >= machine.commit_index
    ]
    if caught_up and len(machine.voters) < 5 and rng.random() < 0.6:
        return sim.change_voters(machine.voters | {rng.choice(caught_up)}) is not None
    if len(machine.voters) > 1 and not any(sim.rejoining(name) for name in sim.members):
        # (While a restored voter catches up it does not vote: fewer voters could
        # leave a set with no majority able to elect anyone.)
        removed = rng.choice(sorted(machine.voters))
        return sim.change_voters(machine.voters - {removed}) is not None
    return 0


@pytest.mark.parametrize("first", range(0, SCHEDULES, CHUNK))
def test_randomized_schedules_are_safe_and_settle(first: int) -> None:
    outcomes = [run_schedule(seed) for seed in range(first, first + CHUNK)]
    for outcome in outcomes:
        assert outcome.violations == [], (
            f"seed {outcome.seed} (replay: run_schedule({outcome.seed})): {outcome.violations[:5]}"
        )
        assert outcome.settled_after is not None, (
            f"seed {outcome.seed} (replay: run_schedule({outcome.seed})): did not settle "
            f"within {SETTLE_BOUND} s of healing"
        )
    # The schedules are not vacuous: they commit, crash, cut, re-elect, change voters
    # and compact.
    assert sum(o.acknowledged for o in outcomes) > 20 * CHUNK
    assert sum(o.crashes for o in outcomes) > CHUNK / 2
    assert sum(o.partitions for o in outcomes) > CHUNK / 4
    assert sum(o.elections for o in outcomes) > 2 * CHUNK
    assert sum(o.voter_changes for o in outcomes) > CHUNK / 4
    assert sum(o.compactions for o in outcomes) > CHUNK / 2


def test_the_checks_catch_a_node_that_forgets_its_vote() -> None:
    """The same schedules, with restarts that lose the saved term and vote: the
    checks must find double votes and two leaders in a term, so the safety checks
    above are not vacuous."""
    violations: list[str] = []
    for seed in range(300):
        violations += run_schedule(seed, lose_disk=True).violations
        if any("voted for" in v for v in violations) and any(
            "has leaders" in v for v in violations
        ):
            return
    pytest.fail(f"300 schedules with forgetful nodes found only {violations[:5]}")
