"""Every waiting reason a user can see, worded as the brief shows them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from murmur.scheduler import DatasetLocality, JobRequest, NodeState, Policy, schedule
from tests.scheduler.builders import make_job, make_node, make_snapshot

REQUIRE = Policy(dataset_locality=DatasetLocality.REQUIRE)


def reason_of(nodes: Sequence[NodeState], job: JobRequest, policy: Policy | None = None) -> str:
    plan = schedule(make_snapshot(nodes, [job]), policy=policy or Policy())
    assert plan.placements == ()
    (entry,) = plan.waiting
    assert entry.job_id == job.id
    assert entry.position == 1
    return entry.reason


def test_one_node_speaks_of_that_node() -> None:
    node = make_node("node-1", busy=range(6))
    assert reason_of([node], make_job("j", 4)) == "waiting: 4 GPUs asked, 2 free on node-1"


def test_gpus_short_everywhere_names_the_best_node() -> None:
    nodes = [make_node("node-1", busy=range(6)), make_node("node-2", busy=range(5))]
    assert reason_of(nodes, make_job("j", 4, model="A100")) == (
        "waiting: no node has 4 free A100 GPUs (best: node-2 with 3)"
    )
    full = [make_node("node-1", busy=range(8)), make_node("node-2", busy=range(8))]
    assert (
        reason_of(full, make_job("j", 1)) == "waiting: no node has 1 free GPU (none has any free)"
    )


def test_cpus_and_memory_short_everywhere_name_the_most_free() -> None:
    nodes = [
        make_node("node-1", cpus_free=4, memory_free_gib=16),
        make_node("node-2", cpus_free=8, memory_free_gib=32),
    ]
    assert reason_of(nodes, make_job("j", 1, cpus=16)) == (
        "waiting: needs 16 CPUs, most free is 8 on node-2"
    )
    assert reason_of(nodes, make_job("j", 1, memory_gib=64)) == (
        "waiting: needs 64 GiB memory, most free is 32 GiB on node-2"
    )


def test_no_single_resource_short_everywhere_says_at_once() -> None:
    nodes = [make_node("node-1", busy=range(6)), make_node("node-2", cpus_free=2)]
    assert reason_of(nodes, make_job("j", 4, cpus=8)) == (
        "waiting: no node has 4 free GPUs and 8 free CPUs at once"
    )


def test_never_fits_as_the_cluster_stands() -> None:
    nodes = [make_node("node-1"), make_node("node-2", 4)]
    assert reason_of(nodes, make_job("j", 16)) == (
        "waiting: no node has 16 GPUs in all (most: node-1 with 8)"
    )
    assert reason_of(nodes, make_job("j", 1, model="H100")) == "waiting: no node has H100 GPUs"
    assert reason_of(nodes, make_job("j", 1, cpus=128)) == (
        "waiting: needs 128 CPUs, the most any node has is 64 (node-1)"
    )
    assert reason_of(nodes, make_job("j", 1, memory_gib=1024)) == (
        "waiting: needs 1024 GiB memory, the most any node has is 512 GiB (node-1)"
    )
    mixed = [make_node("gpus", cpus=8), make_node("cpus", 0, cpus=64)]
    assert reason_of(mixed, make_job("j", 1, cpus=32)) == (
        "waiting: no node has 1 GPU and 32 CPUs in all"
    )


def test_a_closed_node_that_could_run_it_is_mentioned() -> None:
    nodes = [make_node("node-1", 4), make_node("node-3", schedulable=False, reason="draining")]
    assert reason_of(nodes, make_job("j", 8)) == (
        "waiting: 8 GPUs asked, node-1 has 4 in all; node-3 could run it but is draining"
    )


def test_no_schedulable_node() -> None:
    nodes = [make_node("node-1", schedulable=False, reason="draining")]
    assert reason_of(nodes, make_job("j")) == "waiting: no schedulable node (node-1 draining)"
    assert reason_of([], make_job("j")) == (
        "waiting: no schedulable node (the cluster has no nodes)"
    )


def test_datasets_that_exist_nowhere() -> None:
    nodes = [make_node("node-1", datasets={"coco"})]
    assert reason_of(nodes, make_job("j", datasets=("imagenet",))) == (
        "waiting: dataset imagenet is on no node"
    )
    assert reason_of(nodes, make_job("j", datasets=("wiki", "coco", "imagenet"))) == (
        "waiting: datasets wiki and imagenet are on no node"
    )


def test_required_data_names_the_nodes_that_hold_it() -> None:
    nodes = [make_node("node-1"), make_node("node-3", busy=range(7), datasets={"imagenet"})]
    job = make_job("j", 4, datasets=("imagenet",))
    assert reason_of(nodes, job, REQUIRE) == (
        "waiting: dataset imagenet is on node-3, which has 1 free GPU"
    )
    nodes.append(make_node("node-4", 2, datasets={"imagenet"}))
    assert reason_of(nodes, job, REQUIRE) == (
        "waiting: dataset imagenet is on node-3 (has 1 free GPU) and node-4 (has 2 GPUs in all)"
    )
    apart = [make_node("a", datasets={"x"}), make_node("b", datasets={"y"})]
    assert reason_of(apart, make_job("j", datasets=("x", "y")), REQUIRE) == (
        "waiting: no node holds all of datasets x and y"
    )
    closed = [make_node("a"), make_node("b", datasets={"x"}, schedulable=False, reason="down")]
    assert reason_of(closed, make_job("j", datasets=("x",)), REQUIRE) == (
        "waiting: dataset x is on b, which is not schedulable (down)"
    )


@pytest.mark.parametrize(
    ("busy", "expected"),
    [
        ((0, 8, 8, 8), "waiting: 4 nodes asked for a gang, 1 has room"),
        ((0, 0, 8, 8), "waiting: 4 nodes asked for a gang, 2 have room"),
    ],
)
def test_gangs_count_nodes_with_room(busy: tuple[int, ...], expected: str) -> None:
    nodes = [make_node(f"node-{n}", busy=range(b)) for n, b in enumerate(busy)]
    plan = schedule(make_snapshot(nodes, [make_job("g", 4, nodes=4)]))
    assert [w.reason for w in plan.waiting] == [expected]


def test_gangs_larger_than_the_cluster() -> None:
    nodes = [make_node("node-1"), make_node("node-2"), make_node("node-3", 2)]
    assert reason_of(nodes, make_job("g", 4, nodes=3)) == (
        "waiting: 3 nodes asked for a gang, only 2 can run a rank"
    )
    required = [make_node("a", datasets={"x"}), make_node("b")]
    assert reason_of(required, make_job("g", 1, nodes=2, datasets=("x",)), REQUIRE) == (
        "waiting: 2 nodes asked for a gang, only 1 with dataset x can run a rank"
    )


def test_behind_names_the_reserver_and_why_it_goes_first() -> None:
    node = make_node("node-1", busy=range(6))
    jobs = [
        make_job("abc123", 4, priority=1),
        make_job("same", 1, priority=1),
        make_job("lower", 1, priority=0),
    ]
    plan = schedule(make_snapshot([node], jobs))
    assert [w.reason for w in plan.waiting] == [
        "waiting: 4 GPUs asked, 2 free on node-1",
        "waiting: behind job abc123 (submitted earlier) in queue default",
        "waiting: behind job abc123 (higher priority) in queue default",
    ]
