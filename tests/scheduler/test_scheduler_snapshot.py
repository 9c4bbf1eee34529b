"""The snapshot refuses values no real cluster has, and freezes what it is given."""

from __future__ import annotations

import dataclasses
import math

import pytest

from murmur import scheduler
from murmur.scheduler import (
    ClusterSnapshot,
    DuplicateJobError,
    DuplicateNodeError,
    GpuState,
    InvalidGpuStateError,
    InvalidJobRequestError,
    InvalidNodeStateError,
    InvalidSnapshotError,
    JobRequest,
    NodeState,
)
from tests.scheduler.builders import make_job, make_node


def test_public_api_is_exported() -> None:
    for name in scheduler.__all__:
        assert hasattr(scheduler, name), name


def test_gpu_rejects_negative_index_and_memory() -> None:
    with pytest.raises(InvalidGpuStateError, match="index is negative"):
        GpuState(-1, "A100")
    with pytest.raises(InvalidGpuStateError, match="memory_bytes is negative"):
        GpuState(0, "A100", -5)


def test_node_rejects_free_above_total_and_negatives() -> None:
    with pytest.raises(InvalidNodeStateError, match="cpus free"):
        NodeState("n", (), cpus_total=4, cpus_free=5, memory_total_bytes=0, memory_free_bytes=0)
    with pytest.raises(InvalidNodeStateError, match="memory total"):
        NodeState("n", (), cpus_total=4, cpus_free=4, memory_total_bytes=-1, memory_free_bytes=0)
    with pytest.raises(InvalidNodeStateError, match="finite"):
        NodeState(
            "n", (), cpus_total=math.inf, cpus_free=1, memory_total_bytes=0, memory_free_bytes=0
        )
    with pytest.raises(InvalidNodeStateError, match="name is empty"):
        NodeState("", (), cpus_total=1, cpus_free=1, memory_total_bytes=0, memory_free_bytes=0)


def test_rounding_errors_in_free_cpus_are_clamped_not_refused() -> None:
    def node(total: float, free: float) -> NodeState:
        return NodeState("n", (), total, free, memory_total_bytes=0, memory_free_bytes=0)

    assert 0.1 + 0.2 > 0.3
    assert node(0.3, 0.1 + 0.2).cpus_free == 0.3
    assert 0.3 - 0.1 - 0.2 < 0
    assert node(1, 0.3 - 0.1 - 0.2).cpus_free == 0
    with pytest.raises(InvalidNodeStateError):
        node(0.3, 0.31)


def test_node_rejects_repeated_gpu_indices() -> None:
    gpus = (GpuState(0, "A100"), GpuState(0, "A100"))
    with pytest.raises(InvalidNodeStateError, match="GPU indices repeat"):
        NodeState("n", gpus, cpus_total=1, cpus_free=1, memory_total_bytes=0, memory_free_bytes=0)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": ""}, "id is empty"),
        ({"gpus": -1}, "gpus is -1"),
        ({"cpus": -0.5}, "cpus is -0.5"),
        ({"cpus": math.nan}, "cpus is nan"),
        ({"memory_bytes": -1}, "memory_bytes is -1"),
        ({"nodes": 0}, "nodes is 0"),
    ],
)
def test_job_rejects_impossible_requests(changes: dict[str, object], problem: str) -> None:
    fields = {"id": "j", "user": "u", "queue": "q", "priority": 0, "submit_order": 0, "gpus": 1}
    with pytest.raises(InvalidJobRequestError, match=problem):
        JobRequest(**{**fields, **changes})  # type: ignore[arg-type]


def test_snapshot_rejects_duplicate_names_and_ids() -> None:
    with pytest.raises(DuplicateNodeError, match="node 'a' appears twice"):
        ClusterSnapshot((make_node("a"), make_node("a")), ())
    with pytest.raises(DuplicateJobError, match="job 'j' is pending twice"):
        ClusterSnapshot((), (make_job("j"), make_job("j")))


def test_all_snapshot_errors_are_value_errors_under_one_base() -> None:
    assert issubclass(InvalidNodeStateError, InvalidSnapshotError)
    assert issubclass(InvalidSnapshotError, ValueError)
    assert issubclass(InvalidSnapshotError, scheduler.SchedulerError)


def test_lists_become_tuples_and_labels_a_read_only_copy() -> None:
    labels = {"rack": "r1"}
    node = NodeState(
        "n",
        [GpuState(0, "A100", holders=["x"])],  # type: ignore[arg-type]
        cpus_total=1,
        cpus_free=1,
        memory_total_bytes=0,
        memory_free_bytes=0,
        datasets={"imagenet"},  # type: ignore[arg-type]
        labels=labels,
    )
    labels["rack"] = "r2"
    assert node.labels["rack"] == "r1"
    with pytest.raises(TypeError):
        node.labels["rack"] = "r3"  # type: ignore[index]
    assert isinstance(node.gpus, tuple)
    assert node.gpus[0].holders == ("x",)
    assert node.datasets == frozenset({"imagenet"})
    job = JobRequest("j", "u", "q", 0, 0, 1, datasets=["a"])  # type: ignore[arg-type]
    assert job.datasets == ("a",)
    snapshot = ClusterSnapshot([node], [job])  # type: ignore[arg-type]
    assert isinstance(snapshot.nodes, tuple)
    assert isinstance(snapshot.pending, tuple)


def test_values_are_frozen_and_hashable() -> None:
    node = make_node("n")
    assert hash(node) == hash(make_node("n"))
    assert node == make_node("n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "m"  # type: ignore[misc]
    hash(make_job("j"))
