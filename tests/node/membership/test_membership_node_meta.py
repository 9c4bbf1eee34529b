"""The NodeInfo blob each node gossips: what it keeps, what it trims, what it refuses."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.membership import (
    MAX_META_BYTES,
    TRIM_ORDER,
    NodeMetaTooLargeError,
    decode_meta,
    encode_meta,
)
from murmur.node.membership.node_meta import LoadDamper
from murmur.v1 import types_pb2


def full_info(*, gpus: int = 8, datasets: int = 3) -> types_pb2.NodeInfo:
    return types_pb2.NodeInfo(
        name="gpu-07",
        address="10.0.0.7:4100",
        join_address="10.0.0.7:4101",
        state=types_pb2.NODE_STATE_ALIVE,
        labels={"rack": "r2", "zone": "a"},
        voter=True,
        incarnation=42,
        gpus=types_pb2.GpuInventory(
            source=types_pb2.GPU_SOURCE_NVML,
            devices=[
                types_pb2.GpuDevice(
                    index=i,
                    uuid=f"GPU-{i:08d}",
                    model="NVIDIA A100-SXM4-80GB",
                    memory_total_bytes=80 << 30,
                )
                for i in range(gpus)
            ],
        ),
        load=types_pb2.NodeLoad(
            gpus_free=gpus,
            gpu_stats=[
                types_pb2.GpuStats(
                    index=i,
                    utilization_percent=50,
                    memory_used_bytes=1 << 30,
                    temperature_celsius=60,
                    power_milliwatts=250_000,
                )
                for i in range(gpus)
            ],
            cpu_percent=12.5,
            cpu_count=64,
        ),
        runtimes=["process", "docker"],
        runtime_notes="docker: no engine at unix:///var/run/docker.sock",
        traffic=[
            types_pb2.ServiceTraffic(
                service="llama", window_seconds=30, requests=900, latency_ms_log2=[0, 3, 40]
            )
        ],
        version="0.1.0",
        datasets=[
            types_pb2.Dataset(
                name=f"set-{i}",
                node="gpu-07",
                path=f"/data/set-{i}",
                size_bytes=1 << 40,
                file_count=1000,
                manifest_sha256="ab" * 32,
                added_by="alice",
            )
            for i in range(datasets)
        ],
    )


def test_a_blob_keeps_what_the_cluster_view_needs() -> None:
    info = full_info()
    decoded = decode_meta(encode_meta(info))
    assert decoded is not None
    assert decoded.name == "gpu-07"
    assert decoded.labels == {"rack": "r2", "zone": "a"}
    assert len(decoded.gpus.devices) == 8
    assert decoded.load.gpus_free == 8
    assert [s.utilization_percent for s in decoded.load.gpu_stats] == [50] * 8
    assert [s.memory_used_bytes for s in decoded.load.gpu_stats] == [1 << 30] * 8
    assert [d.path for d in decoded.datasets] == ["/data/set-0", "/data/set-1", "/data/set-2"]
    assert decoded.runtime_notes == info.runtime_notes


def test_temperature_power_and_incarnation_stay_home() -> None:
    info = full_info()
    decoded = decode_meta(encode_meta(info))
    assert decoded is not None
    assert not any(s.HasField("temperature_celsius") for s in decoded.load.gpu_stats)
    assert not any(s.HasField("power_milliwatts") for s in decoded.load.gpu_stats)
    assert decoded.incarnation == 0
    # The caller's message is not modified.
    assert info.load.gpu_stats[0].temperature_celsius == 60
    assert info.incarnation == 42


def test_the_same_facts_give_the_same_bytes() -> None:
    one, two = full_info(), full_info()
    two.labels.clear()
    two.labels["zone"] = "a"  # inserted in the other order
    two.labels["rack"] = "r2"
    assert encode_meta(one) == encode_meta(two)


def sizes_after_each_trim(info: types_pb2.NodeInfo) -> list[int]:
    """Blob size with nothing trimmed, then after each trim step in order."""
    trimmed = types_pb2.NodeInfo()
    trimmed.CopyFrom(info)
    sizes = [len(encode_meta(trimmed, limit=1 << 30))]
    for _, drop in TRIM_ORDER:
        drop(trimmed)
        sizes.append(len(encode_meta(trimmed, limit=1 << 30)))
    return sizes


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_over_the_limit_the_parts_go_in_order(steps: int) -> None:
    info = full_info(gpus=8, datasets=40)
    sizes = sizes_after_each_trim(info)
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(sizes)) == len(sizes), "each trim step makes the blob smaller"
    limit = sizes[steps]  # fits after exactly `steps` trims

    decoded = decode_meta(encode_meta(info, limit=limit))

    assert decoded is not None
    dropped = {part for part, _ in TRIM_ORDER[:steps]}
    assert (len(decoded.traffic) == 0) == ("service traffic" in dropped)
    assert (len(decoded.load.gpu_stats) == 0) == ("gpu telemetry" in dropped)
    assert (decoded.runtime_notes == "") == ("runtime notes" in dropped)
    assert (len(decoded.datasets) == 0) == ("datasets" in dropped)
    if "dataset details" in dropped and "datasets" not in dropped:
        assert [d.name for d in decoded.datasets][:2] == ["set-0", "set-1"]
        assert all(d.path == "" and d.manifest_sha256 == "" for d in decoded.datasets)
    assert len(decoded.gpus.devices) == 8, "the inventory always stays"


def test_trimming_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    info = full_info(datasets=40)
    info.name = "trim-log-node"
    limit = sizes_after_each_trim(info)[1]
    with caplog.at_level(logging.WARNING, logger="murmur.membership"):
        encode_meta(info, limit=limit)
        encode_meta(info, limit=limit)
    assert [r.message for r in caplog.records] == [
        "gossip metadata over its size limit; dropped service traffic"
    ]


def test_a_node_whose_core_facts_are_too_large_is_told_so() -> None:
    info = full_info()
    info.name = "labelled"
    for i in range(2000):
        info.labels[f"label-{i}"] = "x" * 10
    with pytest.raises(NodeMetaTooLargeError, match="fewer or shorter labels"):
        encode_meta(info)


def test_a_typical_node_fits_well_within_the_limit() -> None:
    assert len(encode_meta(full_info(gpus=8, datasets=10))) < MAX_META_BYTES // 2


@pytest.mark.parametrize(
    "blob",
    [b"", b"\xff\xff\xff", types_pb2.NodeInfo(address="a:1").SerializeToString()],
    ids=["empty", "not protobuf", "no name"],
)
def test_unusable_blobs_decode_to_none(blob: bytes) -> None:
    assert decode_meta(blob) is None


@given(st.binary(max_size=512))
def test_decoding_never_raises(blob: bytes) -> None:
    info = decode_meta(blob)
    assert info is None or info.name


def _loaded(cpu: float, memory_used: int, gpu_util: int, gpu_memory: int) -> types_pb2.NodeInfo:
    info = types_pb2.NodeInfo(name="n1")
    info.load.cpu_percent = cpu
    info.load.memory_total_bytes = 64 * 2**30
    info.load.memory_used_bytes = memory_used
    info.load.gpus_free = 3
    info.load.measured_at.seconds = 1_800_000_000
    info.load.gpu_stats.add(index=0, utilization_percent=gpu_util, memory_used_bytes=gpu_memory)
    return info


def test_the_load_damper_keeps_the_blob_identical_while_readings_only_wobble() -> None:
    damper = LoadDamper()
    first = encode_meta(damper.apply(_loaded(2.0, 10 * 2**30, 0, 0)))
    for cpu, memory, util, gpu_memory in [
        (4.9, 10 * 2**30 + 2**29, 4, 2**27),
        (0.0, 10 * 2**30 - 2**29, 1, 0),
        (6.9, 10 * 2**30 + 2**29, 4, 255 * 2**20),
    ]:
        assert encode_meta(damper.apply(_loaded(cpu, memory, util, gpu_memory))) == first


def test_the_load_damper_lets_a_real_change_through_exactly() -> None:
    damper = LoadDamper()
    damper.apply(_loaded(2.0, 10 * 2**30, 0, 0))
    moved = damper.apply(_loaded(37.5, 20 * 2**30, 90, 40 * 2**30))
    assert moved.load.cpu_percent == 37.5
    assert moved.load.memory_used_bytes == 20 * 2**30
    assert moved.load.gpu_stats[0].utilization_percent == 90
    assert moved.load.gpu_stats[0].memory_used_bytes == 40 * 2**30
    assert not moved.load.HasField("measured_at")
    # Counts are never held back: a freed GPU is news at once.
    counted = _loaded(37.5, 20 * 2**30, 90, 40 * 2**30)
    counted.load.gpus_free = 4
    assert damper.apply(counted).load.gpus_free == 4


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=30))
def test_the_gossiped_cpu_reading_is_never_off_by_a_whole_step(readings: list[float]) -> None:
    damper = LoadDamper()
    for reading in readings:
        info = _loaded(reading, 0, 0, 0)
        assert abs(damper.apply(info).load.cpu_percent - reading) < 5.0
