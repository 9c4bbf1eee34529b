"""The replicated job queue in real daemons: submit through any node, the leader
places, the chosen node runs, and a leader's death loses nothing."""

from __future__ import annotations

import murmur
from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import client_for, eventually, start_cluster, status_of, wait_converged
from tests.support.nodes import Lab

TWO_GPUS = ["--simulate-gpus", "2xA100-80GB"]


def process_job(name: str, *command: str, gpus: int = 0, retries: int = 0) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name=name,
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=list(command),
        gpus=types_pb2.GpuRequest(count=gpus),
        retries=retries,
    )


async def job_state(client: murmur.AsyncClient, job_id: str) -> types_pb2.Job:
    return await client.get_job(job_id, timeout=10)


def ended(job: types_pb2.Job) -> bool:
    return job.state in (
        types_pb2.JOB_STATE_SUCCEEDED,
        types_pb2.JOB_STATE_FAILED,
        types_pb2.JOB_STATE_CANCELLED,
        types_pb2.JOB_STATE_LOST,
    )


async def test_jobs_submitted_anywhere_spread_over_the_nodes_and_logs_follow(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, extra_args=TWO_GPUS, env=FAST_VOTERS)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    follower = next(node for node in nodes if node.name != leader)

    async with client_for(follower, lab.admin_identity) as client:
        # Three jobs that each need a whole node's GPUs run side by side, one per node
        # (long enough to be seen running together on a slow machine; cancelled below).
        submitted = [
            await client.submit_job(process_job(f"wide-{i}", "sleep", "30", gpus=2))
            for i in range(3)
        ]
        running = await eventually(
            lambda: _all(client, [job.id for job in submitted]),
            lambda jobs: all(job.state == types_pb2.JOB_STATE_RUNNING for job in jobs),
            within=20,
            what="three two-GPU jobs running at once",
        )
        assert sorted(job.runs[-1].node for job in running) == sorted(n.name for n in nodes)
        for job in running:
            run = job.runs[-1]
            assert run.term >= 1
            assert run.sequence >= 1

        # A job's output is read through any node, from the node that ran it.
        echo = await client.submit_job(process_job("hello", "echo", "hello from the cluster"))
        done = await eventually(
            lambda: job_state(client, echo.id), ended, within=20, what="the echo job to end"
        )
        assert done.state == types_pb2.JOB_STATE_SUCCEEDED, done

        # Stopped before the test ends: a run outlives its killed node (its supervisor
        # keeps it going until its lease lapses).
        for job in submitted:
            await client.cancel_job(job.id, timeout=10)
        await eventually(
            lambda: _all(client, [job.id for job in submitted]),
            lambda jobs: all(ended(job) for job in jobs),
            within=20,
            what="the three two-GPU jobs to end once cancelled",
        )
    other = next(node for node in nodes if node.name not in (follower.name, done.runs[-1].node))
    logs = lab.murmur("job", "logs", echo.id, "--node", other.address)
    assert logs.returncode == 0, logs.stderr
    assert "hello from the cluster" in logs.stdout


async def _all(client: murmur.AsyncClient, ids: list[str]) -> list[types_pb2.Job]:
    return [await job_state(client, job_id) for job_id in ids]


async def test_running_jobs_survive_the_leaders_kill_and_finish_once(lab: Lab) -> None:
    # The survivors' runs must outlast the election and the new leader's first renewal
    # (a lease renewed every lease/3 s, at most 2 s): 10 s leaves room on a slow machine.
    # A short stop grace keeps the wait for the dead node's runs (lease + grace + 5 s
    # margin) as short as before.
    lease = {
        **FAST_VOTERS,
        "MURMUR_NODE_RUN_LEASE_SECONDS": "10",
        "MURMUR_NODE_STOP_GRACE_SECONDS": "2",
    }
    nodes = start_cluster(lab, 3, extra_args=TWO_GPUS, env=lease)
    leader, term = await wait_agreed(nodes, lab, voters=3)
    others = [node for node in nodes if node.name != leader]

    async with client_for(others[0], lab.admin_identity) as client:
        jobs = [
            await client.submit_job(process_job(f"long-{i}", "sleep", "8", gpus=2, retries=1))
            for i in range(3)
        ]
        await eventually(
            lambda: _all(client, [job.id for job in jobs]),
            lambda seen: all(job.state == types_pb2.JOB_STATE_RUNNING for job in seen),
            within=20,
            what="all three jobs running, one per node",
        )
        next(node for node in nodes if node.name == leader).kill()
        _, new_term = await wait_agreed(others, lab, voters=3, within=20, not_leader=leader)
        assert new_term > term

        # Submissions go on through the new leader.
        after = await client.submit_job(process_job("after", "true"))
        finished = await eventually(
            lambda: _all(client, [*(job.id for job in jobs), after.id]),
            lambda seen: all(ended(job) for job in seen),
            within=60,
            what="every job to end",
        )
    for job in finished:
        assert job.state == types_pb2.JOB_STATE_SUCCEEDED, job
        if job.runs[0].node != leader:
            assert len(job.runs) == 1, job  # never re-run: its run survived the failover
            continue
        # Its node died with it: once the run's lease surely expired, the job was
        # given up there and run again elsewhere (it had a retry left).
        first, second = job.runs
        assert first.state == types_pb2.JOB_STATE_LOST, job
        assert second.node != leader, job
        assert second.term > first.term, job
    # A leader that is not the dead one; not necessarily the first one elected after
    # it, which a loaded machine may have seen deposed and replaced since.
    await eventually(
        lambda: status_of(others[1], lab),
        lambda status: status is not None and status.leader not in ("", leader),
        within=20,
        what=f"a leader other than {leader}",
    )


async def test_a_voter_that_missed_a_compacted_log_catches_up_from_a_snapshot(lab: Lab) -> None:
    # Snapshots every 10 entries: a few jobs are enough to compact the log several times.
    settings = {**FAST_VOTERS, "MURMUR_NODE_RAFT_SNAPSHOT_ENTRIES": "10"}
    nodes = start_cluster(lab, 3, extra_args=TWO_GPUS, env=settings)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    absent = next(node for node in nodes if node.name != leader)
    others = [node for node in nodes if node is not absent]
    absent.kill()
    # Once gossip holds it dead, nothing is placed there (a job placed in the very
    # moment it died would wait out a lease, which is not what this test is about).
    await wait_converged(others, lab.admin_identity, {absent.name: "dead"})

    async with client_for(others[0], lab.admin_identity) as client:
        submitted = [await client.submit_job(process_job(f"j{i}", "true")) for i in range(12)]
        await eventually(
            lambda: _all(client, [job.id for job in submitted]),
            lambda seen: all(ended(job) for job in seen),
            within=40,
            what="every job to end while one voter is away",
        )
    back = lab.restart(absent)
    everyone = [*others, back]
    await wait_agreed(everyone, lab, voters=3, within=30)
    # The returning voter's own replica (GetStatus counts come from it) holds every job,
    # each as it ended (a replica may lag its leader by a heartbeat: wait for it).
    await eventually(
        lambda: status_of(back, lab),
        lambda status: status is not None and dict(status.jobs_by_state) == {"succeeded": 12},
        within=30,
        what="the returning voter to hold all 12 jobs, succeeded",
    )
    events = [record.get("event") for record in back.log_records()]
    assert "consensus.snapshot_installed" in events
