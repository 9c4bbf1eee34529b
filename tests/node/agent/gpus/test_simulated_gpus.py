"""Parsing of --simulate-gpus specs and the simulated probe built on them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.agent.gpus import (
    MAX_SIMULATED_GPUS,
    GpuProbeClosedError,
    GpuSource,
    SimulatedGpuProbe,
    SimulatedGpuSpecError,
    parse_simulated_spec,
)

GIB = 2**30
MIB = 2**20


def test_single_group_with_memory() -> None:
    devices = parse_simulated_spec("8xA100-80GB")

    assert [device.index for device in devices] == list(range(8))
    assert {device.model for device in devices} == {"A100"}
    assert {device.memory_total_bytes for device in devices} == {80 * GIB}
    assert all(device.simulated for device in devices)
    assert {device.driver_version for device in devices} == {"simulated"}
    assert {device.compute_capability for device in devices} == {None}
    assert devices[3].uuid == "GPU-SIM-A100-3"


def test_groups_are_indexed_consecutively() -> None:
    devices = parse_simulated_spec("4xA100-80GB, 2xT4-16GB")

    assert [(device.index, device.model) for device in devices] == [
        (0, "A100"),
        (1, "A100"),
        (2, "A100"),
        (3, "A100"),
        (4, "T4"),
        (5, "T4"),
    ]
    assert devices[5].uuid == "GPU-SIM-T4-5"
    assert devices[5].memory_total_bytes == 16 * GIB


def test_memory_is_optional_and_then_zero() -> None:
    (device,) = parse_simulated_spec("1xT4")

    assert device.model == "T4"
    assert device.memory_total_bytes == 0


@pytest.mark.parametrize(
    ("memory", "expected_bytes"),
    [("24GB", 24 * GIB), ("24GiB", 24 * GIB), ("24gb", 24 * GIB), ("512MB", 512 * MIB)],
)
def test_memory_units(memory: str, expected_bytes: int) -> None:
    (device,) = parse_simulated_spec(f"1xRTX4090-{memory}")

    assert device.model == "RTX4090"
    assert device.memory_total_bytes == expected_bytes


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("8x", "'8x' has no MODEL after '8x'"),
        ("x A100", "'x A100' does not start with COUNTx"),
        ("A100", "'A100' does not start with COUNTx"),
        ("0xA100", "count 0 in '0xA100' is not between 1 and 64"),
        ("65xA100", "count 65 in '65xA100' is not between 1 and 64"),
        ("8xA100-lots", "memory 'lots' in '8xA100-lots' is not a whole number with a unit"),
        ("8xA100-80XB", "memory unit 'XB' in '8xA100-80XB' is not GB, GiB, MB or MiB"),
        ("8xA100-0GB", "memory in '8xA100-0GB' is zero"),
        ("8xA100-", "memory '' in '8xA100-' is not a whole number"),
        ("8xA 100", "'8xA 100' has a MODEL that is not letters, digits, '_' or '.'"),
        ("4xA100,,2xT4", "a group between commas is empty"),
        ("40xA100,40xT4", "80 GPUs in all, at most 64 allowed"),
    ],
)
def test_bad_specs_say_what_is_wrong_and_what_is_expected(spec: str, problem: str) -> None:
    with pytest.raises(SimulatedGpuSpecError) as caught:
        parse_simulated_spec(spec)

    message = str(caught.value)
    assert message.startswith(f"invalid --simulate-gpus {spec!r}: {problem}")
    assert message.endswith(
        "expected COUNTxMODEL[-MEMORY] like 8xA100-80GB or 4xA100-80GB,2xT4-16GB"
    )
    assert "\n" not in message
    assert caught.value.spec == spec
    assert isinstance(caught.value, ValueError)


_models = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.]{0,11}", fullmatch=True)
_memories = st.none() | st.tuples(
    st.integers(min_value=1, max_value=4096), st.sampled_from(["GB", "GiB", "MB", "MiB"])
)
_groups = st.tuples(st.integers(min_value=1, max_value=16), _models, _memories)


@given(groups=st.lists(_groups, min_size=1, max_size=4))
def test_generated_specs_round_trip(groups: list[tuple[int, str, tuple[int, str] | None]]) -> None:
    spec = ",".join(
        f"{count}x{model}" + ("" if memory is None else f"-{memory[0]}{memory[1]}")
        for count, model, memory in groups
    )
    expected = []
    for count, model, memory in groups:
        if memory is None:
            memory_bytes = 0
        else:
            amount, unit = memory
            memory_bytes = amount * (GIB if unit in ("GB", "GiB") else MIB)
        expected.extend([(model, memory_bytes)] * count)

    devices = parse_simulated_spec(spec)

    assert [(device.model, device.memory_total_bytes) for device in devices] == expected
    assert [device.index for device in devices] == list(range(len(expected)))
    assert len({device.uuid for device in devices}) == len(devices)
    assert all(device.uuid.startswith("GPU-SIM-") for device in devices)


def test_sixty_four_gpus_is_the_limit() -> None:
    assert len(parse_simulated_spec(f"{MAX_SIMULATED_GPUS}xA100")) == MAX_SIMULATED_GPUS
    assert len(parse_simulated_spec("32xA100,32xT4")) == MAX_SIMULATED_GPUS


def test_probe_labels_its_inventory_simulated() -> None:
    probe = SimulatedGpuProbe("2xH100-80GB")

    inventory = probe.inventory()

    assert inventory.source is GpuSource.SIMULATED
    assert inventory.reason == "simulated: 2xH100-80GB"
    assert inventory.summary() == "2 GPUs (simulated: 2xH100-80GB)"
    assert [device.uuid for device in inventory.devices] == ["GPU-SIM-H100-0", "GPU-SIM-H100-1"]


def test_probe_telemetry_has_one_all_unknown_sample_per_device() -> None:
    probe = SimulatedGpuProbe("2xT4-16GB,1xA100-40GB")

    samples = probe.telemetry()

    assert [sample.index for sample in samples] == [0, 1, 2]
    for sample in samples:
        assert sample.utilization_percent is None
        assert sample.memory_used_bytes is None
        assert sample.temperature_celsius is None
        assert sample.power_milliwatts is None


def test_probe_rejects_bad_spec_at_construction() -> None:
    with pytest.raises(SimulatedGpuSpecError, match="count 0"):
        SimulatedGpuProbe("0xA100")


def test_probe_refuses_telemetry_after_close() -> None:
    probe = SimulatedGpuProbe("1xT4")
    probe.close()
    probe.close()

    with pytest.raises(GpuProbeClosedError):
        probe.telemetry()
