"""Jobs on a real node with the docker runtime, against a real Docker engine: run and log,
fail with the exit code, cancel, time limit, a missing image, and a kill -9 of the daemon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from google.protobuf.duration_pb2 import Duration

from murmur import AsyncClient, resolve_connect_config
from murmur.v1 import types_pb2
from tests.node.agent.test_jobs_process import ENDED, log_text, wait_for
from tests.support.docker_engine import DockerEngine
from tests.support.nodes import Lab, NodeProcess


@pytest.fixture
def docker_node(lab: Lab, docker_engine: DockerEngine) -> NodeProcess:
    return lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        extra_args=["--simulate-gpus", "4xA100-80GB"],
        env={
            "DOCKER_HOST": docker_engine.host,
            "MURMUR_NODE_JOB_NETWORK_MODE": "none",
            "MURMUR_NODE_STOP_GRACE_SECONDS": "2",
        },
    )


@pytest.fixture
async def client(lab: Lab, docker_node: NodeProcess) -> AsyncIterator[AsyncClient]:
    config = resolve_connect_config(node=docker_node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as connected:
        yield connected


def docker_job(image: str, *command: str, **fields: object) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(image=image, command=list(command), **fields)  # type: ignore[arg-type]


async def test_a_busybox_job_logs_and_succeeds(
    client: AsyncClient, docker_engine: DockerEngine
) -> None:
    script = "echo hello from docker; echo G=$CUDA_VISIBLE_DEVICES"
    job = await client.submit_job(
        docker_job(docker_engine.image, "sh", "-c", script, gpus=types_pb2.GpuRequest(count=2))
    )
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_SUCCEEDED, done.reason
    lines = await log_text(client, job.id)
    assert "hello from docker" in lines
    assert "G=0,1" in lines


async def test_a_failing_container_is_failed_with_its_exit_code(
    client: AsyncClient, docker_engine: DockerEngine
) -> None:
    job = await client.submit_job(docker_job(docker_engine.image, "sh", "-c", "exit 3"))
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_FAILED
    assert done.exit_code == 3


async def test_cancel_and_time_limit_stop_containers(
    client: AsyncClient, docker_engine: DockerEngine
) -> None:
    sleeper = await client.submit_job(docker_job(docker_engine.image, "sleep", "60"))
    limited = await client.submit_job(
        docker_job(docker_engine.image, "sleep", "60", time_limit=Duration(seconds=1))
    )
    await wait_for(client, sleeper.id, {types_pb2.JOB_STATE_RUNNING})
    started = time.monotonic()
    await client.cancel_job(sleeper.id)
    cancelled = await wait_for(client, sleeper.id, ENDED, within=20)
    assert cancelled.state == types_pb2.JOB_STATE_CANCELLED
    assert time.monotonic() - started < 15
    timed_out = await wait_for(client, limited.id, ENDED, within=20)
    assert timed_out.state == types_pb2.JOB_STATE_FAILED
    assert "time limit" in timed_out.reason


async def test_a_missing_image_fails_with_a_clear_reason(client: AsyncClient) -> None:
    job = await client.submit_job(docker_job("murmur-test/not-here:1", "true"))
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_FAILED
    assert "not present" in done.reason


async def test_kill_9_of_the_daemon_adopts_containers(
    lab: Lab, docker_node: NodeProcess, docker_engine: DockerEngine
) -> None:
    config = resolve_connect_config(node=docker_node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        long = await client.submit_job(
            docker_job(docker_engine.image, "sh", "-c", "echo before; sleep 4; echo after")
        )
        short = await client.submit_job(
            docker_job(docker_engine.image, "sh", "-c", "sleep 1; exit 5")
        )
        await wait_for(client, long.id, {types_pb2.JOB_STATE_RUNNING})
        # Seen running, or already ended on a slow machine: the restarted daemon must
        # report its exit either way (mostly it ends while the daemon is down).
        await wait_for(client, short.id, {types_pb2.JOB_STATE_RUNNING} | ENDED)
    docker_node.kill()
    await asyncio.sleep(1.5)
    restarted = lab.restart(docker_node)
    config = resolve_connect_config(node=restarted.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        ended = await wait_for(client, short.id, ENDED)
        assert ended.exit_code == 5
        finished = await wait_for(client, long.id, ENDED, within=30)
        assert finished.state == types_pb2.JOB_STATE_SUCCEEDED, finished.reason
        assert len(finished.runs) == 1
        assert {"before", "after"} <= set(await log_text(client, long.id))
