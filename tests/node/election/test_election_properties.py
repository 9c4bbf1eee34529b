"""Randomized schedules: 1,000 seeded runs with crashes, restarts, partitions, loss
and reordering, checking safety all along and liveness once the network heals.

Safety is checked by :class:`ElectionSimulation` after every step of every node
(see its module doc): one leader per term, one vote per node per term across
restarts, leaders whose log is at least as up to date as a majority's, and leaders
that heard from a majority within the lease. A failing schedule names its seed;
``run_schedule(seed)`` replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from node.election import ElectionConfig, ElectionSimulation, LogPosition, PersistentState
from node.gossip.simulation import LinkModel

SCHEDULES = 1_000
CHUNK = 100
FAULT_PHASE = 10.0
"""Simulated seconds of random faults in each schedule."""
LIVENESS_BOUND = 6.0
"""Simulated seconds after healing within which a leader must be followed by a
majority. A round takes at most one election timeout (0.8 s) plus a round trip;
this leaves room for several split votes and for voters with stale logs or inflated
terms that must first be outvoted."""


@dataclass(slots=True)
class Outcome:
    seed: int
    voters: int
    elections: int
    crashes: int
    partitions: int
    healed_to_leader: float | None
    violations: list[str]


def run_schedule(seed: int, *, lose_disk: bool = False) -> Outcome:
    rng = random.Random(f"schedule:{seed}")
    voters = rng.choice((1, 2, 3, 3, 3, 4, 5, 5, 5))
    names = [f"voter-{index}" for index in range(voters)]
    logs = {name: LogPosition(rng.randint(0, 2), rng.randint(0, 3)) for name in names}
    persistent = {name: PersistentState(term=logs[name].term) for name in names}
    link = LinkModel(
        base_delay=rng.choice((0.0003, 0.002)),
        jitter=rng.choice((0.0002, 0.005, 0.02)),
        loss_rate=rng.choice((0.0, 0.0, 0.05, 0.2, 0.4)),
        reorder_rate=rng.choice((0.0, 0.1, 0.3)),
        reorder_delay=rng.choice((0.01, 0.1)),
    )
    config = ElectionConfig(pre_vote=rng.random() < 0.7)
    sim = ElectionSimulation(voters, config, seed=seed, link=link, logs=logs, persistent=persistent)
    crashes = partitions = 0
    while sim.now < FAULT_PHASE:
        sim.run_for(rng.expovariate(1 / 0.3))
        running = sim.running()
        down = [name for name in names if name not in running]
        roll = rng.random()
        if roll < 0.25 and running:
            leaders = sim.leaders()
            # Leaders are killed more often than their share: that is what matters.
            victim = leaders[0] if leaders and rng.random() < 0.5 else rng.choice(running)
            sim.crash(victim)
            crashes += 1
        elif roll < 0.5 and down:
            sim.restart(rng.choice(down), lose_disk=lose_disk)
        elif roll < 0.7:
            shuffled = rng.sample(names, len(names))
            cut = rng.randint(0, len(names))
            sim.partition([shuffled[:cut], shuffled[cut:]])
            partitions += 1
        elif roll < 0.8:
            sim.heal()
    sim.heal()
    sim.link = LinkModel()
    for name in names:
        if name not in sim.running():
            sim.restart(name)
    healed_at = sim.now
    elected_at = sim.run_until_leader(within=LIVENESS_BOUND)
    if elected_at is not None:
        sim.run_for(1.0)  # let the checks see the new leader's lease at work
    return Outcome(
        seed=seed,
        voters=voters,
        elections=len(sim.elections),
        crashes=crashes,
        partitions=partitions,
        healed_to_leader=None if elected_at is None else elected_at - healed_at,
        violations=sim.violations,
    )


@pytest.mark.parametrize("first", range(0, SCHEDULES, CHUNK))
def test_randomized_schedules_are_safe_and_heal_to_a_leader(first: int) -> None:
    outcomes = [run_schedule(seed) for seed in range(first, first + CHUNK)]
    for outcome in outcomes:
        assert outcome.violations == [], f"seed {outcome.seed}: {outcome.violations[:5]}"
        assert outcome.healed_to_leader is not None, (
            f"seed {outcome.seed}: no leader {LIVENESS_BOUND} s after healing"
        )
    # The schedules are not vacuous: they crash, cut and re-elect.
    assert sum(o.crashes for o in outcomes) > CHUNK
    assert sum(o.partitions for o in outcomes) > CHUNK / 2
    assert sum(o.elections for o in outcomes) > 2 * CHUNK


def test_the_checks_catch_a_node_that_forgets_its_vote() -> None:
    """The same schedules, with restarts that lose the saved term and vote: the
    checks must find double votes and two leaders in a term, so the safety checks
    above are not vacuous."""
    violations = [
        violation
        for seed in range(300)
        for violation in run_schedule(seed, lose_disk=True).violations
    ]
    assert any("voted for" in violation for violation in violations)
    assert any("has leaders" in violation for violation in violations)
