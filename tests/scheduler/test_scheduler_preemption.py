"""Choosing whom to preempt: lower tiers only, the fewest, the least work lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler import DEFAULT_POLICY
from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import check_room
from murmur.scheduler.preemption import RunningJob, choose_victims, without
from murmur.scheduler.room import NodeRoom
from murmur.scheduler.snapshot import GpuState, NodeState
from tests.scheduler.builders import GIB, make_job


def node_with(name: str, holders: dict[int, str]) -> NodeState:
    gpus = tuple(
        GpuState(i, "A100", 80 * GIB, (holders[i],) if i in holders else ()) for i in range(8)
    )
    return NodeState(name, gpus, 64, 64, 512 * GIB, 512 * GIB)


def job_on(job_id: str, gpus: range, tier: int, started: int) -> RunningJob:
    return RunningJob(job_id, tier, started, tuple(gpus), 0.0, 0)


def test_the_lowest_tier_then_the_youngest_is_stopped() -> None:
    node = node_with("n1", {**dict.fromkeys(range(4), "old"), **dict.fromkeys(range(4, 8), "new")})
    running = {"n1": [job_on("old", range(4), 10, 100), job_on("new", range(4, 8), 10, 200)]}
    chosen = choose_victims(make_job("urgent", 4), 100, [node], running, DEFAULT_POLICY)
    assert chosen is not None
    assert [v.job_id for v in chosen.victims] == ["new"]  # the least work lost


def test_equal_tiers_never_preempt_each_other() -> None:
    node = node_with("n1", dict.fromkeys(range(8), "peer"))
    running = {"n1": [job_on("peer", range(8), 50, 100)]}
    assert choose_victims(make_job("same", 1), 50, [node], running, DEFAULT_POLICY) is None


def test_the_node_needing_fewest_victims_wins_and_gangs_never_preempt() -> None:
    busy = node_with("a", {i: f"a{i}" for i in range(8)})
    half = node_with("b", {**{i: f"b{i}" for i in range(4)}, **dict.fromkeys(range(4, 8), "big")})
    running = {
        "a": [job_on(f"a{i}", range(i, i + 1), 0, i) for i in range(8)],
        "b": [job_on(f"b{i}", range(i, i + 1), 0, i) for i in range(4)]
        + [job_on("big", range(4, 8), 0, 1)],
    }
    chosen = choose_victims(make_job("four", 4), 9, [busy, half], running, DEFAULT_POLICY)
    assert chosen is not None
    assert (chosen.node, [v.job_id for v in chosen.victims]) == ("b", ["big"])
    assert choose_victims(make_job("gang", 4, nodes=2), 9, [busy, half], running,
                          DEFAULT_POLICY) is None  # fmt: skip


@given(
    tiers=st.lists(st.integers(min_value=0, max_value=3), min_size=8, max_size=8),
    ask=st.integers(min_value=1, max_value=8),
    tier=st.integers(min_value=0, max_value=4),
)
def test_victims_are_lower_tier_and_free_enough(tiers: list[int], ask: int, tier: int) -> None:
    node = node_with("n1", {i: f"j{i}" for i in range(8)})
    running = {"n1": [job_on(f"j{i}", range(i, i + 1), tiers[i], i) for i in range(8)]}
    chosen = choose_victims(make_job("x", ask), tier, [node], running, DEFAULT_POLICY)
    lower = sum(1 for t in tiers if t < tier)
    if lower < ask:
        assert chosen is None
        return
    assert chosen is not None
    assert len(chosen.victims) == ask  # one GPU each: exactly as many as asked
    assert all(victim.tier < tier for victim in chosen.victims)
    freed = NodeRoom(without(node, chosen.victims))
    assert check_room(freed, Ask.of(make_job("x", ask), DEFAULT_POLICY.dataset_locality)) is None


def test_no_victim_is_stopped_that_the_others_make_unneeded() -> None:
    # 5 GPUs wanted. Newest first: n1 (1 GPU), n2 (2), n3 (4): the first prefix that
    # makes room is all three, but n1 and n3 are enough; n2 is spared.
    node = node_with("n", {0: "n1", 1: "n2", 2: "n2", **dict.fromkeys(range(3, 7), "n3"), 7: "x"})
    running = {
        "n": [
            job_on("n1", range(1), 0, 300),
            job_on("n2", range(1, 3), 0, 200),
            job_on("n3", range(3, 7), 0, 100),
            job_on("x", range(7, 8), 50, 400),  # an equal tier: never
        ]
    }
    chosen = choose_victims(make_job("five", 5), 50, [node], running, DEFAULT_POLICY)
    assert chosen is not None
    assert [v.job_id for v in chosen.victims] == ["n1", "n3"]
