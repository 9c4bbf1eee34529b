"""A rolling upgrade of a real cluster (issue 16, docs/operations.md "Upgrading a
cluster"): three ``murmur node`` processes of "the previous version", running jobs,
are upgraded one node at a time, followers first and the leader last, the way the
procedure says: stop the daemon, start the new version on the same data dir.

"The previous version" is this build run with the one testing knob for it,
``MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL=1`` (node/config.py): such a node gossips
protocol level 1 and a version labelled ``+simulated-protocol-1``, and would stop
applying the log at an entry above level 1, as a build from before levels would
misread it. Upgrading a node is restarting it without the knob.

What must hold: mixed nodes keep scheduling; a request that needs a newer level
(a job with a project, protocol 5) is refused, naming a node still old, until the
last one is upgraded, then accepted; no acknowledged job is lost and none runs twice
(each run writes its id to a file of its job: one line per job), though the daemons
under them were restarted (their runs are adopted). And a node refuses, in one line,
to start on a store a newer version migrated.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import murmur
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
from murmur.storage.migrator import latest_version
from murmur.v1 import types_pb2
from tests.node.control.consensus.test_cluster_jobs_processes import ended
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import client_for, eventually, node_states, start_cluster
from tests.support.nodes import Lab, NodeProcess, free_ports

KNOB = "MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL"
OLD = {**FAST_VOTERS, KNOB: "1", "MURMUR_NODE_SHUTDOWN_GRACE_SECONDS": "1"}
GATED = "which does not know job arrays, dependencies, projects and batch submissions"


def marked_job(name: str, marks: Path, seconds: float, *, gpus: int = 0) -> types_pb2.JobSpec:
    """A job that writes its run's id to ``marks/<job id>``, then sleeps: one line per
    run, so a second run of the job shows."""
    return types_pb2.JobSpec(
        name=name,
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=[f'echo "$MURMUR_RUN_ID" >> {marks}/"$MURMUR_JOB_ID"; sleep {seconds}'],
        shell=True,
        gpus=types_pb2.GpuRequest(count=gpus),
    )


async def jobs_of(client: murmur.AsyncClient, ids: list[str]) -> list[types_pb2.Job]:
    return [await client.get_job(job_id, timeout=10) for job_id in ids]


async def levels(node: NodeProcess, lab: Lab) -> dict[str, int]:
    return {
        name: info.protocol_level
        for name, info in (await node_states(node, lab.admin_identity)).items()
    }


async def refused_for_being_old(client: murmur.AsyncClient, marks: Path) -> str:
    project = marked_job("with-project", marks, 0)
    project.project = "vision"
    with pytest.raises(murmur.FailedPrecondition) as refused:
        await client.submit_job(project, timeout=10)
    return str(refused.value)


async def submit_with_project(client: murmur.AsyncClient, marks: Path) -> types_pb2.Job | None:
    project = marked_job("with-project", marks, 0)
    project.project = "vision"
    try:
        return await client.submit_job(project, idempotency_key="with-project", timeout=10)
    except murmur.FailedPrecondition:
        return None


async def test_a_cluster_upgraded_node_by_node_loses_no_job_and_runs_none_twice(
    lab: Lab, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    nodes = start_cluster(lab, 3, extra_args=["--simulate-gpus", "2xA100-80GB"], env=OLD)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    infos = await node_states(nodes[0], lab.admin_identity)
    assert {info.protocol_level for info in infos.values()} == {1}
    assert all(info.version.endswith("+simulated-protocol-1") for info in infos.values())

    submitted: list[str] = []
    async with client_for(nodes[0], lab.admin_identity) as client:
        # One two-GPU job per node, running through the upgrades of their nodes.
        for i in range(3):
            submitted.append(
                (await client.submit_job(marked_job(f"long-{i}", marks, 12, gpus=2))).id
            )
        await eventually(
            lambda: jobs_of(client, submitted),
            lambda jobs: all(job.state == types_pb2.JOB_STATE_RUNNING for job in jobs),
            within=20,
            what="a long job running on every node",
        )
        message = await refused_for_being_old(client, marks)
        assert "(protocol 1)" in message, message
        assert GATED in message, message

    # Followers first, the leader last: the cluster changes leader once, at the end.
    order = [node for node in nodes if node.name != leader] + [
        node for node in nodes if node.name == leader
    ]
    adopted = 0
    for step, old in enumerate(order, 1):
        async with client_for(old, lab.admin_identity) as client:
            on_it = [
                job
                for job in await jobs_of(client, submitted)
                if job.runs and job.runs[-1].node == old.name
            ]
        # Its run goes on without the daemon, and the new one adopts it.
        adopted += sum(job.state == types_pb2.JOB_STATE_RUNNING for job in on_it)
        assert old.terminate() == 0
        del old.env[KNOB]
        new = lab.restart(old)
        nodes = [new if node is old else node for node in nodes]
        await wait_agreed(nodes, lab, voters=3, within=30)
        async with client_for(new, lab.admin_identity) as client:
            # Mixed versions schedule as before: a short job through the upgraded node.
            submitted.append((await client.submit_job(marked_job(f"mixed-{step}", marks, 0))).id)
            if step < len(order):
                message = await refused_for_being_old(client, marks)
                assert GATED in message, message
                assert "(protocol 1)" in message, message
        if step == 1:
            shown = lab.murmur("status", "--node", new.address)
            assert shown.returncode == 0, shown.stderr
            assert "upgrade in progress" in shown.stdout, shown.stdout

    assert adopted >= 1  # at least the first node's: its job runs 12 s, its upgrade about 3
    # Every node speaks this version's level: the job the old nodes held back goes in
    # (once gossip told the node asked, and the leader, of the last one's new level).
    async with client_for(nodes[0], lab.admin_identity) as client:
        await eventually(
            lambda: levels(nodes[0], lab),
            lambda seen: set(seen.values()) == {PROTOCOL_LEVEL},
            within=20,
            what="every node gossiping this version's protocol level",
        )
        accepted = await eventually(
            lambda: submit_with_project(client, marks),
            lambda job: job is not None,
            within=20,
            what="a job with a project accepted",
        )
        assert accepted is not None
        submitted.append(accepted.id)
        finished = await eventually(
            lambda: jobs_of(client, submitted),
            lambda jobs: all(ended(job) for job in jobs),
            within=60,
            what="every acknowledged job to end",
        )
    for job in finished:
        assert job.state == types_pb2.JOB_STATE_SUCCEEDED, job
        assert len(job.runs) == 1, job  # never placed again: its run was adopted
        assert (marks / job.id).read_text().split() == [job.runs[0].id], job.id
    shown = lab.murmur("status", "--node", nodes[0].address)
    assert shown.returncode == 0, shown.stderr
    assert "upgrade" not in shown.stdout, shown.stdout


def test_a_node_refuses_a_store_of_a_newer_version_in_one_line(lab: Lab) -> None:
    # Rolling a node back after the new version migrated its store forward: the old
    # binary says so and stops, before it binds a port (docs/operations.md).
    data_dir = lab.first_data_dir
    with closing(sqlite3.connect(data_dir / "murmur.db")) as raw:
        raw.execute("PRAGMA user_version = 999")
    port, join_port = free_ports()
    result = subprocess.run(
        [sys.executable, "-m", "murmur", "node", "start", "--name", "node-1",
         "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--join-listen", f"127.0.0.1:{join_port}"],
        env=lab.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [
        f"murmur node: store at {data_dir / 'murmur.db'} was written by a newer murmur "
        f"(schema version 999; this one knows up to {latest_version()}): run that murmur, "
        "or a newer one, on it"
    ]
