"""Requeue on node loss, end to end: ``kill -9`` of the node running twelve jobs (the
leader's own) ends with all twelve succeeded elsewhere, none run twice at a time,
none charged a retry (issue 13)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import murmur
from murmur.v1 import types_pb2
from tests.chaos import job_program
from tests.chaos.checker import concurrent_runs
from tests.chaos.history import boot_wall_time, read_executions, read_run_exits
from tests.node.control.consensus.test_cluster_jobs_processes import ended
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import client_for, eventually, start_cluster
from tests.support.nodes import Lab

JOBS = 12
LEASE_SECONDS = 5
"""Short, so the dead node's runs are given up (lease + grace + 5 s) within the test's
budget; the renewals (every lease/3 s) still come well within it."""

SETTINGS = {
    **FAST_VOTERS,
    "MURMUR_NODE_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    "MURMUR_NODE_STOP_GRACE_SECONDS": "1",
    # A node offers its host's CPUs (2 here): a tenth of a CPU each lets twelve jobs
    # that name none run on one node, as on a real server with more cores.
    "MURMUR_NODE_DEFAULT_JOB_CPUS": "0.1",
    "MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "64MiB",
}

JOB = """\
import runpy, sys
from pathlib import Path
results, doomed, program = sys.argv[1:4]
# Its scratch dir is <data dir>/work/<run id>, the data dir named after the node. On
# the node about to be killed it runs until its lease stops it; elsewhere, briefly.
seconds = "120" if Path.cwd().parents[1].name == doomed else "2"
sys.argv = [program, results, seconds, "ok"]
runpy.run_path(program, run_name="__main__")
"""
"""The job: tests/chaos/job_program.py (start, a beat every 0.25 s, end: each a line
in RESULTS/<job id>.log), run for as long as the node it landed on decides."""


async def _jobs(client: murmur.AsyncClient, ids: list[str]) -> list[types_pb2.Job]:
    return [await client.get_job(job_id, timeout=10) for job_id in ids]


async def test_killing_the_leaders_node_requeues_its_twelve_jobs_to_succeed_elsewhere(
    lab: Lab, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    script = tmp_path / "job.py"
    script.write_text(JOB)
    nodes = start_cluster(lab, 3, env=SETTINGS)
    leader_name, term = await wait_agreed(nodes, lab, voters=3, within=30)
    leader = next(node for node in nodes if node.name == leader_name)
    others = [node for node in nodes if node is not leader]

    async with client_for(others[0], lab.admin_identity) as client:
        # Everything on the leader's node: the others are drained while the jobs are
        # placed, and undrained before the kill (a drain is in the log at once).
        for node in others:
            await client.drain_node(node.name, timeout=10)
        command = [sys.executable, "-S", str(script), str(results), leader_name]
        spec = types_pb2.JobSpec(
            runtime=types_pb2.JOB_RUNTIME_PROCESS, command=[*command, job_program.__file__]
        )
        ids = [(await client.submit_job(spec, timeout=10)).id for _ in range(JOBS)]
        running = await eventually(
            lambda: _jobs(client, ids),
            lambda jobs: all(job.state == types_pb2.JOB_STATE_RUNNING for job in jobs),
            within=30,
            what=f"{JOBS} jobs running",
        )
        assert {job.runs[-1].node for job in running} == {leader_name}
        for node in others:
            await client.drain_node(node.name, undrain=True, timeout=10)

        leader.kill()  # kill -9 of the daemon: its runs' supervisors live on, till the lease
        killed_at = time.time()
        _, new_term = await wait_agreed(others, lab, voters=3, within=20, not_leader=leader_name)
        assert new_term > term
        finished = await eventually(
            lambda: _jobs(client, ids),
            lambda jobs: all(ended(job) for job in jobs),
            within=45,
            interval=0.5,
            what=f"all {JOBS} jobs to end",
        )

    for job in finished:
        assert job.state == types_pb2.JOB_STATE_SUCCEEDED, job
        # A loaded machine may cost a re-placed run its (short) lease too: such a run
        # is lost with its node as well, and requeued again.
        lost, *between, done = job.runs
        assert (lost.node, lost.state) == (leader_name, types_pb2.JOB_STATE_LOST), job
        assert all(run.state == types_pb2.JOB_STATE_LOST for run in between), job
        assert done.state == types_pb2.JOB_STATE_SUCCEEDED, job
        assert done.node != leader_name, job
        assert done.term > lost.term, job
        assert job.attempts == 1, job  # the lost run's attempt was given back
        events = [event.message for event in job.history]
        assert any(
            event.endswith("requeued (attempt not spent)")
            and f"lost with node {leader_name}" in event
            for event in events
        ), events

    # The record each run kept: twelve stopped on the dead node no earlier than its
    # lease allowed, twelve that ended ok elsewhere, and no job in two places at once.
    executions, unreadable = read_executions(results, boot_time=boot_wall_time())
    assert unreadable == []
    by_node = {node.name: [e for e in executions if e.node == node.name] for node in nodes}
    assert len(by_node[leader_name]) == JOBS
    assert all(e.how != "ok" for e in by_node[leader_name])
    assert all(e.last_seen >= killed_at for e in by_node[leader_name])  # outlived the daemon
    elsewhere = [e for node in others for e in by_node[node.name]]
    assert sorted(e.job_id for e in elsewhere if e.how == "ok") == sorted(ids)
    run_exits = read_run_exits([node.data_dir for node in nodes])
    overlaps = concurrent_runs(executions, run_exits, set())
    assert overlaps == [], [overlap.describe() for overlap in overlaps]
