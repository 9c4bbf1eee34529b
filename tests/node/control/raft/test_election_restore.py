"""A voter whose disk died, restored from a backup (``murmur node restore``): it comes
back with no Raft state, neither votes nor stands until it has caught up with a
leader, and the leader re-sends it what it no longer holds.

The first test is the reason: put back as the backup had it, a voter that forgot the
entries it acknowledged since lets a node that lacks them become leader, and the
simulation's checks catch it. The same moves with the restore's own rules lose
nothing.
"""

from __future__ import annotations

from murmur.node.control.raft import ElectionConfig, RaftSimulation
from tests.node.control.raft.test_election_properties import run_schedule

SEED = 11


def _acknowledged_after_backup(*, put_old_state_back: bool) -> tuple[RaftSimulation, str, str]:
    """Three voters. A backup of one follower; then, with the other follower cut off,
    commands committed by the leader and that follower alone. That follower's disk
    dies, and so does the leader; the follower is restored; the cut-off one is back.
    Returns (simulation, the old leader, the restored node)."""
    sim = RaftSimulation(3, ElectionConfig(pre_vote=True), seed=SEED)
    assert sim.run_until_leader(within=5.0) is not None
    leader = sim.leader()
    assert leader is not None
    lagging, restored = sorted(set(sim.members) - {leader})
    for index in range(3):
        sim.propose(f"before-{index}".encode())
    sim.run_for(0.5)
    backup = sim.copy_disk(restored)
    sim.partition([[leader, restored], [lagging]])
    for index in range(3):
        sim.propose(f"after-{index}".encode())
    sim.run_for(0.5)
    acked = {ack.proposal.data for ack in sim.acknowledged}
    assert {b"after-0", b"after-1", b"after-2"} <= acked, "committed by leader + restored"
    sim.crash(restored)  # its disk dies
    sim.run_for(1.0)  # (a disk is not replaced in a millisecond: no answer of it in flight)
    sim.crash(leader)
    sim.heal()
    sim.restore(restored, backup if put_old_state_back else None)
    sim.run_for(3.0)
    return sim, leader, restored


def test_a_voter_put_back_with_its_old_raft_state_can_lose_acknowledged_entries() -> None:
    sim, _, restored = _acknowledged_after_backup(put_old_state_back=True)
    assert any("leader completeness" in v for v in sim.violations), sim.violations
    assert not sim.rejoining(restored)


def test_a_restored_voter_does_not_vote_until_it_has_caught_up() -> None:
    sim, leader, restored = _acknowledged_after_backup(put_old_state_back=False)
    # The lagging node cannot win without the restored one's vote, which it does
    # not get: no leader, as with two of three voters down, rather than a wrong one.
    assert sim.leaders() == []
    assert sim.rejoining(restored)
    assert sim.violations == []
    sim.restart(leader)
    assert sim.settle(within=10.0) is not None
    assert sim.violations == []
    assert not sim.rejoining(restored), "caught up: it votes again"
    applied = {data for _, _, data in sim.commands(restored)}
    assert {b"before-0", b"after-2"} <= applied


def test_the_leader_resends_what_a_restored_follower_no_longer_holds() -> None:
    """The leader stays up: it knew the follower matched its log, and must send it all
    again (without that, it would go on sending from where it left off, refused
    forever) and count only what the follower holds now."""
    sim = RaftSimulation(3, seed=SEED)
    assert sim.run_until_leader(within=5.0) is not None
    leader = sim.leader()
    assert leader is not None
    restored = sorted(set(sim.members) - {leader})[0]
    for index in range(20):
        sim.propose(f"c{index}".encode())
    sim.run_for(0.5)
    assert sim.machine(leader).match_index(restored) > 20
    sim.crash(restored)
    sim.run_for(1.0)
    sim.restore(restored)
    sim.run_for(2.0)
    assert not sim.rejoining(restored)
    machine = sim.machine(leader)
    assert machine.match_index(restored) == machine.last_log.index
    assert sim.commands(restored) == sim.commands(leader)
    assert sim.violations == []


def test_random_schedules_with_restored_voters_are_safe_and_settle() -> None:
    """Crashes, partitions, loss, voter changes, compaction, and restores of one voter
    at a time (see ``_may_restore``): Raft's checks hold and every schedule settles."""
    outcomes = [run_schedule(seed, restores=True) for seed in range(400)]
    for outcome in outcomes:
        assert outcome.violations == [], (
            f"seed {outcome.seed} (replay: run_schedule({outcome.seed}, restores=True)): "
            f"{outcome.violations[:5]}"
        )
        assert outcome.settled_after is not None, f"seed {outcome.seed} did not settle"
    assert sum(outcome.restored for outcome in outcomes) > 50
