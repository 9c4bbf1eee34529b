"""Jobs on a real node with the process runtime: run, log, fail, cancel, time out, wait
for GPUs, retry, and survive a kill -9 of the daemon."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

import murmur
from murmur import AsyncClient, resolve_connect_config
from murmur.certs import Role
from murmur.v1 import types_pb2
from tests.support.cluster import eventually
from tests.support.nodes import Lab, NodeProcess

FAST = {
    "MURMUR_NODE_STOP_GRACE_SECONDS": "1",
    "MURMUR_NODE_RETRY_BACKOFF_SECONDS": "0.2",
}
ENDED = {
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
    types_pb2.JOB_STATE_CANCELLED,
    types_pb2.JOB_STATE_LOST,
}


@pytest.fixture
def gpu_node(lab: Lab) -> NodeProcess:
    return lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        extra_args=["--simulate-gpus", "8xA100-80GB"],
        env=FAST,
    )


@pytest.fixture
async def client(lab: Lab, gpu_node: NodeProcess) -> AsyncIterator[AsyncClient]:
    config = resolve_connect_config(node=gpu_node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as connected:
        yield connected


def process_job(*command: str, gpus: int = 0, **fields: object) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=list(command),
        gpus=types_pb2.GpuRequest(count=gpus),
        **fields,  # type: ignore[arg-type]
    )


async def wait_for(
    client: AsyncClient, job_id: str, states: set[int], within: float = 30.0
) -> types_pb2.Job:
    deadline = time.monotonic() + within
    while True:
        job = await client.get_job(job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job.state}: {job}")
        await asyncio.sleep(0.05)


async def log_text(client: AsyncClient, job_id: str) -> list[str]:
    return [line.text async for line in client.stream_logs(job_id)]


async def test_a_job_prints_succeeds_and_its_log_is_kept(client: AsyncClient) -> None:
    job = await client.submit_job(
        process_job(
            "sh", "-c", "echo hello; echo oops >&2; echo CUDA=$CUDA_VISIBLE_DEVICES", gpus=2
        )
    )
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_SUCCEEDED, done.reason
    assert done.exit_code == 0
    assert list(done.runs[0].gpu_indices) == [0, 1]
    lines = [line async for line in client.stream_logs(job.id)]
    user_lines = [(x.stream, x.text) for x in lines if x.stream != types_pb2.LOG_STREAM_SYSTEM]
    assert (types_pb2.LOG_STREAM_STDOUT, "hello") in user_lines
    assert (types_pb2.LOG_STREAM_STDERR, "oops") in user_lines
    assert (types_pb2.LOG_STREAM_STDOUT, "CUDA=0,1") in user_lines
    assert all(line.time.seconds > 0 for line in lines)


async def test_a_failing_job_is_failed_with_its_exit_code(client: AsyncClient) -> None:
    job = await client.submit_job(process_job("sh", "-c", "exit 3"))
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_FAILED
    assert done.exit_code == 3
    assert "3" in done.reason


async def test_cancel_stops_a_sleeping_job_within_the_grace_period(client: AsyncClient) -> None:
    job = await client.submit_job(process_job("sleep", "60"))
    await wait_for(client, job.id, {types_pb2.JOB_STATE_RUNNING})
    started = time.monotonic()
    await client.cancel_job(job.id, reason="changed my mind")
    done = await wait_for(client, job.id, ENDED, within=15)
    assert done.state == types_pb2.JOB_STATE_CANCELLED
    assert "changed my mind" in done.reason
    assert time.monotonic() - started < 10, "stop should not need more than grace + a little"


async def test_a_pending_job_can_be_cancelled_and_nobody_else_may(
    client: AsyncClient, lab: Lab, gpu_node: NodeProcess
) -> None:
    job = await client.submit_job(process_job("true", gpus=64))  # more than the node has
    waiting = await wait_for(client, job.id, {types_pb2.JOB_STATE_PENDING})
    member = lab.issue_identity("max", Role.MEMBER)
    config = resolve_connect_config(node=gpu_node.address, identity=member)
    async with AsyncClient(config) as other:
        with pytest.raises(murmur.PermissionDenied):
            await other.cancel_job(job.id)
    cancelled = await client.cancel_job(job.id)
    assert cancelled.state == types_pb2.JOB_STATE_CANCELLED
    assert waiting.reason


async def test_a_time_limit_stops_the_job(client: AsyncClient) -> None:
    job = await client.submit_job(process_job("sleep", "60", time_limit=Duration(seconds=1)))
    done = await wait_for(client, job.id, ENDED, within=20)
    assert done.state == types_pb2.JOB_STATE_FAILED
    assert "time limit" in done.reason


async def test_a_virtualenv_job_runs_inside_it(client: AsyncClient, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    job = await client.submit_job(
        process_job("python", "-c", "import sys; print(sys.prefix)", venv=str(venv))
    )
    done = await wait_for(client, job.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_SUCCEEDED, done.reason
    assert str(venv) in await log_text(client, job.id)


async def test_two_4_gpu_jobs_run_and_a_third_waits_with_a_reason(client: AsyncClient) -> None:
    first = await client.submit_job(process_job("sleep", "60", gpus=4))
    second = await client.submit_job(process_job("sleep", "60", gpus=4))
    third = await client.submit_job(process_job("true", gpus=4))
    running = [await wait_for(client, j.id, {types_pb2.JOB_STATE_RUNNING}) for j in (first, second)]
    held = [set(job.runs[-1].gpu_indices) for job in running]
    assert not held[0] & held[1]
    assert len(held[0] | held[1]) == 8
    # The reason is the next placement pass's (seen "queued" when read at once).
    waiting = await eventually(
        lambda: client.get_job(third.id),
        lambda job: "4 GPUs" in job.reason,
        within=10,
        what="the third job's waiting reason",
    )
    assert waiting.state == types_pb2.JOB_STATE_PENDING
    assert waiting.queue_position == 1
    await client.cancel_job(first.id)
    done = await wait_for(client, third.id, ENDED)
    assert done.state == types_pb2.JOB_STATE_SUCCEEDED
    assert set(done.runs[-1].gpu_indices) == held[0]
    await client.cancel_job(second.id)


async def test_retries_run_a_failing_job_again_then_give_up(client: AsyncClient) -> None:
    job = await client.submit_job(process_job("sh", "-c", "exit 1", retries=2))
    done = await wait_for(client, job.id, {types_pb2.JOB_STATE_FAILED}, within=30)
    assert done.attempts == 3
    assert [run.attempt for run in done.runs] == [1, 2, 3]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (types_pb2.JobSpec(), "command is empty"),
        (types_pb2.JobSpec(image="bad image", command=["x"]), "not a valid image"),
        (types_pb2.JobSpec(command=["x"], datasets=["nope"]), "unknown dataset"),
        (types_pb2.JobSpec(command=["x"], workdir="relative"), "absolute"),
        (types_pb2.JobSpec(command=["x"], env={"CUDA_VISIBLE_DEVICES": "0"}), "set by murmur"),
    ],
)
async def test_bad_specs_are_invalid_argument(
    client: AsyncClient, spec: types_pb2.JobSpec, fragment: str
) -> None:
    with pytest.raises(murmur.InvalidArgument, match=fragment):
        await client.submit_job(spec)
    assert await client.list_jobs() == []


async def test_a_retried_submission_with_the_same_key_makes_one_job(client: AsyncClient) -> None:
    spec = process_job("true")
    first = await client.submit_job(spec, idempotency_key="k-1")
    again = await client.submit_job(spec, idempotency_key="k-1")
    assert first.id == again.id
    assert len(await client.list_jobs()) == 1


def gated(gate: Path, then: str) -> str:
    """A shell script that waits until ``gate`` exists, then runs ``then``: a job that
    ends when the test says so, however slow the machine."""
    return f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; {then}"


async def test_kill_9_of_the_daemon_loses_nothing(
    lab: Lab, gpu_node: NodeProcess, tmp_path: Path
) -> None:
    long_gate, short_gate = tmp_path / "long.gate", tmp_path / "short.gate"
    try:
        config = resolve_connect_config(node=gpu_node.address, identity=lab.admin_identity)
        async with AsyncClient(config) as client:
            long = await client.submit_job(
                process_job("sh", "-c", "echo before; " + gated(long_gate, "echo after"), gpus=8)
            )
            short = await client.submit_job(process_job("sh", "-c", gated(short_gate, "exit 5")))
            pending = await client.submit_job(process_job("true", gpus=1))
            await wait_for(client, long.id, {types_pb2.JOB_STATE_RUNNING})
            await wait_for(client, short.id, {types_pb2.JOB_STATE_RUNNING})
        gpu_node.kill()
        short_gate.touch()
        await asyncio.sleep(1.5)  # `short` ends while the daemon is down
        restarted = lab.restart(gpu_node)
        config = resolve_connect_config(node=restarted.address, identity=lab.admin_identity)
        async with AsyncClient(config) as client:
            adopted = await client.get_job(long.id)
            assert adopted.state == types_pb2.JOB_STATE_RUNNING, adopted.reason
            assert len(adopted.runs) == 1, "an adopted job must not be started twice"
            ended = await wait_for(client, short.id, ENDED)
            assert ended.state == types_pb2.JOB_STATE_FAILED
            assert ended.exit_code == 5
            assert (await client.get_job(pending.id)).state == types_pb2.JOB_STATE_PENDING
            long_gate.touch()
            finished = await wait_for(client, long.id, ENDED)
            assert finished.state == types_pb2.JOB_STATE_SUCCEEDED
            assert {"before", "after"} <= set(await log_text(client, long.id))
            after = await wait_for(client, pending.id, ENDED)
            assert after.state == types_pb2.JOB_STATE_SUCCEEDED
    finally:  # a failed test leaves no job waiting for its gate
        long_gate.touch()
        short_gate.touch()
