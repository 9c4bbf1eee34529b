"""``murmur status`` as printed: voters with their state when not up, what an
election without a majority needs, and where other nodes' GPU counts come from."""

from __future__ import annotations

import argparse

import pytest

from murmur._cli import commands_cluster
from murmur.v1 import cluster_pb2, types_pb2

DEAD = types_pb2.NODE_STATE_DEAD
ALIVE = types_pb2.NODE_STATE_ALIVE


def node(
    name: str, state: types_pb2.NodeState.ValueType = ALIVE, *, gpus: int = 0, free: int = 0
) -> types_pb2.NodeInfo:
    return types_pb2.NodeInfo(
        name=name,
        state=state,
        gpus=types_pb2.GpuInventory(
            devices=[types_pb2.GpuDevice(index=i, model="A100") for i in range(gpus)],
            source=types_pb2.GPU_SOURCE_SIMULATED,
        ),
        load=types_pb2.NodeLoad(gpus_free=free),
    )


def printed(
    status: cluster_pb2.ClusterStatus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> list[str]:
    monkeypatch.setattr(commands_cluster, "run_with_client", lambda args, action: status)
    assert commands_cluster.status_command(argparse.Namespace(json=False)) == 0
    return capsys.readouterr().out.splitlines()


def test_the_survivor_of_two_voters_says_what_an_election_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cluster_pb2.ClusterStatus(
        answered_by="vm",
        term=3,
        voters=["gpu2", "vm"],
        nodes=[node("gpu2", DEAD), node("gpu3", types_pb2.NODE_STATE_LEFT), node("vm")],
    )
    assert printed(status, monkeypatch, capsys)[0] == (
        "cluster: 3 nodes, no leader (term 3), voters: gpu2 (dead), vm; "
        "nothing is scheduled until 2 of the 2 voters (1 up) elect one"
    )


def test_a_leader_is_printed_with_its_term_and_a_dead_voter_marked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cluster_pb2.ClusterStatus(
        answered_by="m1",
        leader="m3",
        term=13,
        voters=["m1", "m2", "m3"],
        nodes=[node("m1"), node("m2", DEAD), node("m3")],
    )
    assert printed(status, monkeypatch, capsys)[0] == (
        "cluster: 3 nodes, leader m3 (term 13), voters: m1, m2 (dead), m3"
    )


def test_gpu_counts_say_they_are_gossiped_when_other_nodes_hold_gpus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alone = cluster_pb2.ClusterStatus(
        answered_by="m1", nodes=[node("m1", gpus=4, free=4)], gpus_total=4, gpus_free=4,
        gpus_simulated=True,
    )  # fmt: skip
    assert printed(alone, monkeypatch, capsys)[1] == "gpus: 4/4 free (simulated)"
    two = cluster_pb2.ClusterStatus(
        answered_by="m1", nodes=[node("m1"), node("m2", gpus=4)], gpus_total=4, gpus_free=0,
    )  # fmt: skip
    assert printed(two, monkeypatch, capsys)[1] == (
        "gpus: 0/4 free (other nodes' counts as gossiped to m1: seconds old)"
    )


def versioned(name: str, version: str, level: int, **fields: object) -> types_pb2.NodeInfo:
    info = node(name)
    info.version = version
    info.protocol_level = level
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_a_rolling_upgrade_says_who_runs_what_and_what_waits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cluster_pb2.ClusterStatus(
        answered_by="gpu1",
        leader="gpu1",
        term=4,
        voters=["gpu1", "gpu2", "gpu3"],
        nodes=[
            versioned("gpu1", "0.2.0", 5),
            versioned("gpu2", "0.2.0", 5),
            versioned("gpu3", "0.1.0", 0),  # from before levels: it speaks level 1
            versioned("old", "0.0.9", 0, state=types_pb2.NODE_STATE_LEFT),  # gone for good
        ],
        version="0.2.0",
    )
    lines = printed(status, monkeypatch, capsys)
    assert (
        "upgrade in progress: murmur 0.2.0 (protocol 5) on gpu1, gpu2; murmur 0.1.0 "
        "(protocol 1) on gpu3. Requests that need protocol 2 or more are refused until "
        "every node runs it"
    ) in lines


def test_a_node_that_stopped_applying_the_log_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "entry 812: it needs control protocol 5 (job arrays); this node speaks protocol 1"
    status = cluster_pb2.ClusterStatus(
        answered_by="gpu1",
        voters=["gpu1"],
        nodes=[versioned("gpu1", "0.2.0", 5), versioned("gpu2", "0.2.0", 5, upgrade_needed=reason)],
    )
    lines = printed(status, monkeypatch, capsys)
    assert (
        f"node gpu2 must be upgraded: it stopped applying the control log at {reason} "
        "(its jobs run on)"
    ) in lines
    assert not any(line.startswith("upgrade in progress") for line in lines)
