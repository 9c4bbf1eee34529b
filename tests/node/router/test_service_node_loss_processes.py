"""A replica's node dies (``kill -9`` of its daemon and of the replica): requests
sent through another node's router go on, failing at most until the cluster has
seen the node dead, and then all succeed on the other replica; the lost replica is
placed again on the third node and becomes ready, so the service has its two
replicas again (issue 15)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support import openai_server
from tests.support.cluster import client_for, eventually, host_of, start_cluster
from tests.support.nodes import Lab, free_port

SETTINGS = {
    **FAST_VOTERS,
    "MURMUR_NODE_RUN_LEASE_SECONDS": "5",
    "MURMUR_NODE_STOP_GRACE_SECONDS": "1",
}
ONE_GPU = ["--simulate-gpus", "1xA100-80GB"]
"""Each replica asks one GPU, so the two replicas and their stand-in land on three
different nodes."""


def service(pid_dir: Path) -> types_pb2.ServiceSpec:
    command = [
        sys.executable, "-S", openai_server.__file__, "--model", "toy-llm",
        "--pid-dir", str(pid_dir),
    ]  # fmt: skip
    spec = types_pb2.ServiceSpec(
        name="toy",
        template=types_pb2.JobSpec(
            runtime=types_pb2.JOB_RUNTIME_PROCESS,
            command=command,
            gpus=types_pb2.GpuRequest(count=1),
        ),
        replicas=2,
        model="toy-llm",
    )
    spec.readiness.period.FromMilliseconds(300)
    return spec


async def test_after_a_replicas_node_dies_requests_succeed_and_the_replica_comes_back(
    lab: Lab, tmp_path: Path
) -> None:
    routers = {index: f"{host_of(index)}:{free_port(host_of(index))}" for index in (1, 2, 3)}
    nodes = start_cluster(
        lab, 3, extra_args=ONE_GPU, env=SETTINGS,
        env_of=lambda index: {"MURMUR_NODE_ROUTER_LISTEN": routers[index]},
    )  # fmt: skip
    await wait_agreed(nodes, lab, voters=3, within=30)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(mode=0o777)
    pid_dir.chmod(0o777)
    async with client_for(nodes[0], lab.admin_identity) as client:
        await client.create_service(service(pid_dir), timeout=10)
        ready = await eventually(
            lambda: client.get_service("toy", timeout=10),
            lambda found: found.ready == 2,
            within=40,
            what="two replicas ready",
        )
        placed = {replica.node: replica for replica in ready.replicas}
        spare = next(node for node in nodes if node.name not in placed)
        doomed = next(node for node in nodes if node.name in placed and node is not nodes[0])
        lost_replica = placed[doomed.name]
        router = routers[int(spare.name.rsplit("-", 1)[1])]

        outcomes: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def load(http: aiohttp.ClientSession) -> None:
            body = {"model": "toy-llm", "messages": [{"role": "user", "content": "hi"}]}
            while not stop.is_set():
                try:
                    async with http.post(
                        f"http://{router}/v1/chat/completions", json=body,
                        timeout=aiohttp.ClientTimeout(total=5),
                    ) as answer:  # fmt: skip
                        await answer.read()
                        outcomes.append((time.monotonic(), answer.status))
                except (aiohttp.ClientError, TimeoutError):
                    outcomes.append((time.monotonic(), 0))
                await asyncio.sleep(0.05)

        async with aiohttp.ClientSession() as http:
            sender = asyncio.create_task(load(http))
            await asyncio.sleep(1)
            replica_pid = int((pid_dir / f"{lost_replica.job_id}.pid").read_text())
            doomed.kill()  # kill -9 of the daemon ...
            os.kill(replica_pid, signal.SIGKILL)  # ... and of the replica: the node is gone
            killed_at = time.monotonic()
            back = await eventually(
                lambda: client.get_service("toy", timeout=10),
                lambda found: (
                    found.ready == 2 and spare.name in {replica.node for replica in found.replicas}
                ),
                within=60,
                what="the lost replica ready again on the third node",
            )
            await asyncio.sleep(1)
            stop.set()
            await sender

    assert {replica.node for replica in back.replicas} == {spare.name, *placed} - {doomed.name}
    failures = [at - killed_at for at, status in outcomes if status != 200 and at > killed_at]
    after = [status for at, status in outcomes if at > killed_at + (max(failures, default=0))]
    assert after, "no request was sent after the last failure"
    assert all(status == 200 for status in after)
    # Failures stop once the cluster has seen the node dead (or the router found the
    # replica unreachable and tried the other one): well within the run lease.
    assert max(failures, default=0.0) < 15, failures
    assert sum(1 for _, status in outcomes if status == 200) > 20
