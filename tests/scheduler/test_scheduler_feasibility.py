"""One node, one job: each feasibility rule, its phrase, and the free-GPU rule."""

from __future__ import annotations

import pytest

from murmur.scheduler import (
    CpusBusy,
    DatasetAbsent,
    DatasetLocality,
    GpuModelAbsent,
    GpusBusy,
    GpuState,
    Infeasible,
    JobRequest,
    MemoryBusy,
    NodeState,
    NodeUnschedulable,
    TooFewCpus,
    TooFewGpus,
    TooLittleMemory,
    check_node,
    usable_gpu_indices,
)
from tests.scheduler.builders import make_job, make_node


def test_a_job_that_fits_gets_none() -> None:
    assert check_node(make_node("node-1"), make_job("j", 8, cpus=64, memory_gib=512)) is None


def test_unschedulable_node_refuses_with_its_reason() -> None:
    why = check_node(make_node("node-1", schedulable=False, reason="draining"), make_job("j"))
    assert why == NodeUnschedulable("node-1", "draining")
    assert str(why) == "node-1 is not schedulable (draining)"
    assert not why.transient
    bare = check_node(make_node("node-1", schedulable=False), make_job("j"))
    assert str(bare) == "node-1 is not schedulable"


def test_model_matches_case_insensitive_substring() -> None:
    node = make_node("node-1", model="NVIDIA A100-SXM4-80GB")
    assert check_node(node, make_job("j", 1, model="a100")) is None
    assert check_node(node, make_job("j", 1, model="SXM4")) is None
    why = check_node(node, make_job("j", 1, model="H100"))
    assert why == GpuModelAbsent("node-1", "H100", ("NVIDIA A100-SXM4-80GB",))
    assert str(why) == "H100 GPUs asked, node-1 has none (it has NVIDIA A100-SXM4-80GB)"
    assert str(check_node(make_node("cpu", 0), make_job("j", 1, model="T4"))) == (
        "T4 GPUs asked, cpu has none (no GPUs)"
    )


def test_cpu_only_job_ignores_gpu_model() -> None:
    assert check_node(make_node("cpu", 0), make_job("j", 0, model="H100", cpus=2)) is None


def test_static_refusals_come_before_transient_ones() -> None:
    node = make_node("node-1", 4, busy={0, 1, 2, 3}, cpus=8, cpus_free=0, memory_gib=32)
    why = check_node(node, make_job("j", 8))
    assert why == TooFewGpus("node-1", 8, 4, "")
    assert str(why) == "8 GPUs asked, node-1 has 4 in all"
    assert str(check_node(node, make_job("j", 1, cpus=16))) == "16 CPUs asked, node-1 has 8 in all"
    assert check_node(node, make_job("j", 1, cpus=16)) == TooFewCpus("node-1", 16, 8)
    memory = check_node(node, make_job("j", 1, memory_gib=64))
    assert memory == TooLittleMemory("node-1", 64 * 2**30, 32 * 2**30)
    assert str(memory) == "64 GiB memory asked, node-1 has 32 GiB in all"
    assert not any(w.transient for w in (why, memory))


def test_transient_refusals_name_what_is_free() -> None:
    node = make_node(
        "node-1", 8, busy=range(6), cpus=64, cpus_free=8, memory_gib=512, memory_free_gib=32
    )
    gpus = check_node(node, make_job("j", 4, model="a100"))
    assert gpus == GpusBusy("node-1", 4, 2, "a100")
    assert str(gpus) == "4 a100 GPUs asked, 2 free on node-1"
    assert gpus is not None
    assert gpus.transient
    cpus = check_node(node, make_job("j", 1, cpus=16))
    assert cpus == CpusBusy("node-1", 16, 8)
    assert str(cpus) == "16 CPUs asked, 8 free on node-1"
    memory = check_node(node, make_job("j", 1, memory_gib=64))
    assert memory == MemoryBusy("node-1", 64 * 2**30, 32 * 2**30)
    assert str(memory) == "64 GiB memory asked, 32 GiB free on node-1"


def test_exclusive_job_needs_unheld_gpus() -> None:
    node = make_node("node-1", 4, busy={0}, shared={1, 2})
    assert usable_gpu_indices(node, make_job("j", 1)) == (3,)
    assert check_node(node, make_job("j", 2)) == GpusBusy("node-1", 2, 1, "")


def test_sharing_job_may_join_gpus_held_only_by_sharers() -> None:
    node = make_node("node-1", 4, busy={0}, shared={1, 2})
    assert usable_gpu_indices(node, make_job("j", 1, share=True)) == (1, 2, 3)
    assert check_node(node, make_job("j", 3, share=True)) is None
    assert check_node(node, make_job("j", 4, share=True)) == GpusBusy("node-1", 4, 3, "")


def test_shared_flag_without_holders_is_just_free() -> None:
    node = NodeState("n", (GpuState(0, "A100", shared=True),), 1, 1, 0, 0)
    assert usable_gpu_indices(node, make_job("j", 1)) == (0,)


def test_fractional_cpus_add_up_without_float_drift() -> None:
    node = make_node("node-1", 0, cpus=0.3, cpus_free=0.3 - 0.1)
    assert check_node(node, make_job("j", 0, cpus=0.2)) is None


@pytest.mark.parametrize("locality", list(DatasetLocality))
def test_datasets_bind_only_when_required(locality: DatasetLocality) -> None:
    node = make_node("node-1", datasets={"coco"})
    why = check_node(
        node, make_job("j", 1, datasets=("imagenet", "coco")), dataset_locality=locality
    )
    if locality is DatasetLocality.PREFER:
        assert why is None
    else:
        assert why == DatasetAbsent("node-1", ("imagenet",))
        assert str(why) == "dataset imagenet is not on node-1"
        assert not why.transient


def refusal(node: NodeState, job: JobRequest) -> Infeasible:
    why = check_node(node, job)
    assert why is not None
    return why


def test_clauses_read_after_which() -> None:
    node = make_node("node-3", 8, busy=range(7), cpus_free=1)
    assert refusal(node, make_job("j", 4)).clause() == "has 1 free GPU"
    assert refusal(node, make_job("j", 1, cpus=2)).clause() == "has 1 free CPU"
    assert refusal(node, make_job("j", 9)).clause() == "has 8 GPUs in all"
