"""Bursts of submissions from many client processes, against real daemons: every
acknowledged job reaches an end, and a cancel ends a job wherever it was caught.

Regression for issue 11: 8 clients x 125 submissions on one node left 1-14 of the
1,000 jobs "scheduled" or "starting" for good (a start cut short by its caller's
deadline). `python -m tests.bench.bench_bursts` runs the ten bursts of the issue.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import murmur
from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.bursts import burst, wait_ended
from tests.support.cluster import client_for, start_cluster
from tests.support.nodes import Lab

CAUGHT = (types_pb2.JOB_STATE_SCHEDULED, types_pb2.JOB_STATE_STARTING)


@pytest.mark.serial
async def test_a_burst_on_one_node_all_succeeds(lab: Lab) -> None:
    node = lab.start_node("node-1", data_dir=lab.first_data_dir)
    job_ids = await asyncio.to_thread(burst, [node.address], lab.admin_identity)
    assert len(set(job_ids)) == 1000
    async with client_for(node, lab.admin_identity) as client:
        jobs = await wait_ended(client, job_ids, within=120)
    failed = [job for job in jobs.values() if job.state != types_pb2.JOB_STATE_SUCCEEDED]
    assert failed == []


@pytest.mark.serial
async def test_a_burst_through_every_node_of_a_cluster_all_succeeds(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    await wait_agreed(nodes, lab, voters=3)
    addresses = [node.address for node in nodes]
    job_ids = await asyncio.to_thread(burst, addresses, lab.admin_identity, per_client=60)
    assert len(set(job_ids)) == 480
    async with client_for(nodes[0], lab.admin_identity) as client:
        jobs = await wait_ended(client, job_ids, within=180)
    failed = [job for job in jobs.values() if job.state != types_pb2.JOB_STATE_SUCCEEDED]
    assert failed == []


@pytest.mark.serial
async def test_jobs_cancelled_while_scheduled_or_starting_all_end(lab: Lab) -> None:
    """A watcher cancels every job it sees scheduled or starting, during a burst:
    half of them as soon as they are scheduled, the other half once starting."""
    node = lab.start_node("node-1", data_dir=lab.first_data_dir)
    caught: dict[str, int] = {}

    def catch_in(job: types_pb2.Job) -> int:
        return CAUGHT[int(job.id, 16) % 2]

    async def cancel_as_caught(client: murmur.AsyncClient) -> None:
        async for job in client.watch_jobs(states=CAUGHT):
            if job.state == catch_in(job) and job.id not in caught:
                caught[job.id] = job.state
                with contextlib.suppress(murmur.FailedPrecondition):  # it ended meanwhile
                    await client.cancel_job(job.id, reason="caught", timeout=30)

    async with client_for(node, lab.admin_identity) as client:
        canceller = asyncio.create_task(cancel_as_caught(client))
        await asyncio.sleep(0.5)  # the watch is open
        job_ids = await asyncio.to_thread(
            burst, [node.address], lab.admin_identity, clients=4, per_client=50
        )
        try:
            jobs = await wait_ended(client, job_ids, within=120)
        finally:
            canceller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await canceller
    assert set(caught.values()) == set(CAUGHT), "jobs were not caught in both states"
    for job_id in caught:
        assert jobs[job_id].state in (
            types_pb2.JOB_STATE_CANCELLED,
            types_pb2.JOB_STATE_SUCCEEDED,  # it ended before the cancel reached its run
        ), jobs[job_id]
    cancelled = [job for job in jobs.values() if job.state == types_pb2.JOB_STATE_CANCELLED]
    assert cancelled, "no cancel took effect"
    assert {job.id for job in cancelled} <= set(caught)
