"""Which node is best, and which GPUs on it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler import (
    GpuState,
    NodeScore,
    NodeState,
    choose_gpu_indices,
    rank_nodes,
    score_node,
)
from murmur.scheduler.ranking import shortest_run
from tests.scheduler.builders import make_job, make_node


def names(nodes: tuple[NodeState, ...]) -> list[str]:
    return [node.name for node in nodes]


def test_data_locality_beats_best_fit_all_then_some_then_none() -> None:
    nodes = [
        make_node("none", busy=range(7)),
        make_node("some", datasets={"a"}),
        make_node("all", datasets={"a", "b"}),
    ]
    job = make_job("j", 1, datasets=("a", "b"))
    assert names(rank_nodes(nodes, job)) == ["all", "some", "none"]


def test_best_fit_leaves_fewest_free_gpus() -> None:
    nodes = [make_node("empty"), make_node("half", busy=range(4)), make_node("full", busy=range(8))]
    assert names(rank_nodes(nodes, make_job("j", 2))) == ["half", "empty"]
    assert score_node(nodes[1], make_job("j", 2)) == NodeScore(0, 0, 0, 0, 2, 2, 64, "half")


def test_jobs_without_data_keep_off_data_nodes() -> None:
    nodes = [make_node("data", busy=range(4), datasets={"a"}), make_node("plain")]
    assert names(rank_nodes(nodes, make_job("j", 1))) == ["plain", "data"]


def test_equal_nodes_break_ties_by_name_whatever_the_input_order() -> None:
    nodes = [make_node("b"), make_node("c"), make_node("a")]
    assert names(rank_nodes(nodes, make_job("j", 1))) == ["a", "b", "c"]


def test_cpu_only_jobs_best_fit_on_cpus() -> None:
    nodes = [make_node("big", 0, cpus=64), make_node("small", 0, cpus=64, cpus_free=8)]
    assert names(rank_nodes(nodes, make_job("j", 0, cpus=4))) == ["small", "big"]


def test_sharing_job_prefers_gpus_already_shared() -> None:
    nodes = [make_node("fresh", 1), make_node("shared", 2, shared={1})]
    job = make_job("j", 1, share=True)
    assert names(rank_nodes(nodes, job)) == ["shared", "fresh"]
    assert choose_gpu_indices(nodes[1], job) == (1,)


def test_gpu_choice_takes_the_shortest_contiguous_run() -> None:
    node = make_node("n", 8, busy={3, 6})  # free: 0 1 2 | 4 5 | 7
    assert choose_gpu_indices(node, make_job("j", 1)) == (7,)
    assert choose_gpu_indices(node, make_job("j", 2)) == (4, 5)
    assert choose_gpu_indices(node, make_job("j", 3)) == (0, 1, 2)
    assert choose_gpu_indices(node, make_job("j", 4)) == (0, 1, 2, 4)


def test_gpu_choice_respects_the_model() -> None:
    gpus = (GpuState(0, "T4"), GpuState(1, "A100"), GpuState(2, "T4"), GpuState(3, "A100"))
    node = NodeState("mixed", gpus, 8, 8, 0, 0)
    assert choose_gpu_indices(node, make_job("j", 2, model="a100")) == (1, 3)
    assert choose_gpu_indices(node, make_job("j", 0)) == ()


@given(st.sets(st.integers(0, 15)), st.integers(0, 16))
def test_shortest_run_returns_count_distinct_candidates(free: set[int], count: int) -> None:
    candidates = sorted(free)
    chosen = shortest_run(candidates, count)
    assert len(chosen) == min(count, len(candidates))
    assert set(chosen) <= free
    assert list(chosen) == sorted(set(chosen))
    runs_long_enough = any(
        all(start + k in free for k in range(count)) for start in free if count > 0
    )
    if runs_long_enough:
        assert chosen == tuple(range(chosen[0], chosen[0] + count))
