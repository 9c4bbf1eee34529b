"""A drain in real daemons: once ``murmur node drain`` answers, the leader places
nothing new on the node, however soon the next job comes (issue 11 part 3b)."""

from __future__ import annotations

import asyncio

import murmur
from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import (
    client_for,
    eventually,
    host_of,
    provision_node,
    start_cluster,
    wait_converged,
)
from tests.support.nodes import Lab, NodeProcess

ROUNDS = 4
SETTLE_SECONDS = 1.5
"""How long a drained node is watched for a job it must not get: three placement
passes' worth (a pass runs at least every 0.5 s)."""


def gpu_job(name: str, gpus: int) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name=name,
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=["sleep", "60"],
        gpus=types_pb2.GpuRequest(count=gpus),
    )


def start_uneven_cluster(lab: Lab) -> list[NodeProcess]:
    """node-1 and node-3 with one GPU each, node-2 with four: a 4-GPU job fits only on
    node-2, and node-2 is where the most room is for a 1-GPU job."""
    gpus = {1: "1xA100-80GB", 2: "4xA100-80GB", 3: "1xA100-80GB"}
    first = lab.start_node(
        "node-1", data_dir=lab.first_data_dir, host=host_of(1),
        extra_args=["--simulate-gpus", gpus[1]], env=FAST_VOTERS, wait=False,
    )  # fmt: skip
    nodes = [first]
    for index in (2, 3):
        name = f"node-{index}"
        node = lab.start_node(
            name, data_dir=provision_node(lab, name, host_of(index)), host=host_of(index),
            extra_args=["--seed", first.address, "--simulate-gpus", gpus[index]],
            env=FAST_VOTERS, wait=False,
        )  # fmt: skip
        nodes.append(node)
    for node in nodes:
        node.wait_ready()
    return nodes


def drain(lab: Lab, via: NodeProcess, name: str, *, undo: bool = False) -> None:
    args = ["node", "drain", name, "--node", via.address, *(["--undo"] if undo else [])]
    result = lab.murmur(*args)
    assert result.returncode == 0, result.stderr


async def nodes_of(client: murmur.AsyncClient, job_ids: list[str]) -> list[str]:
    jobs = [await client.get_job(job_id, timeout=10) for job_id in job_ids]
    return [job.runs[-1].node for job in jobs if job.runs]


async def test_no_job_lands_on_a_node_drained_a_moment_before(lab: Lab) -> None:
    nodes = start_uneven_cluster(lab)
    await wait_agreed(nodes, lab, voters=3)
    target, via = nodes[1], nodes[2]
    async with client_for(nodes[0], lab.admin_identity) as client:
        for round_ in range(ROUNDS):
            drain(lab, via, target.name)
            # At once: a job only node-2 can hold, and small ones it would be first for.
            wide = await client.submit_job(gpu_job(f"wide-{round_}", 4))
            small = [await client.submit_job(gpu_job(f"small-{round_}-{i}", 1)) for i in range(2)]
            await asyncio.sleep(SETTLE_SECONDS)
            held = await client.get_job(wide.id, timeout=10)
            assert held.state == types_pb2.JOB_STATE_PENDING, held
            assert not held.runs
            assert "draining" in held.reason, held.reason
            placed = await nodes_of(client, [job.id for job in small])
            assert target.name not in placed, placed

            # Undrained, node-2 takes the wide job.
            drain(lab, via, target.name, undo=True)
            wide_id = wide.id
            started = await eventually(
                lambda: client.get_job(wide_id, timeout=10),  # noqa: B023 (awaited at once)
                lambda job: bool(job.runs),
                within=45,
                what="the wide job to be placed after undrain",
            )
            assert started.runs[-1].node == target.name
            for job in (wide, *small):
                await client.cancel_job(job.id, timeout=10)
            await eventually(
                lambda: client.list_jobs(
                    states=[
                        types_pb2.JOB_STATE_PENDING,
                        types_pb2.JOB_STATE_SCHEDULED,
                        types_pb2.JOB_STATE_STARTING,
                        types_pb2.JOB_STATE_RUNNING,
                    ],
                    timeout=10,
                ),
                lambda active: not active,
                within=45,
                what="every job of the round to end",
            )
    # The node's own flag (what `node list` shows) went with each drain and undrain.
    await wait_converged(nodes, lab.admin_identity, {target.name: "alive"})


async def test_a_lone_voter_honours_its_own_drain(lab: Lab) -> None:
    (node,) = start_cluster(lab, 1, extra_args=["--simulate-gpus", "2xA100-80GB"])
    await wait_agreed([node], lab, voters=1, within=15)
    async with client_for(node, lab.admin_identity) as client:
        drain(lab, node, node.name)
        job = await client.submit_job(gpu_job("alone", 1))
        await asyncio.sleep(SETTLE_SECONDS)
        held = await client.get_job(job.id, timeout=10)
        assert held.state == types_pb2.JOB_STATE_PENDING
        assert "draining" in held.reason, held.reason
        drain(lab, node, node.name, undo=True)
        await eventually(
            lambda: client.get_job(job.id, timeout=10),
            lambda j: j.state == types_pb2.JOB_STATE_RUNNING,
            within=45,
            what="the job to run after undrain",
        )
        await client.cancel_job(job.id, timeout=10)
