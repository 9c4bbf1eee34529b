"""Bounded state in a real daemon: an ended job past the retention leaves the
queue, and ``murmur job show`` still shows it, from the archive, after a restart too."""

from __future__ import annotations

import json

from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import wait_agreed
from tests.support.cluster import client_for, eventually, start_cluster
from tests.support.nodes import Lab

TINY_RETENTION = {"MURMUR_NODE_JOB_RETENTION_SECONDS": "1"}


async def test_an_ended_job_is_forgotten_and_still_shown_from_the_archive(lab: Lab) -> None:
    (node,) = start_cluster(lab, 1, env=TINY_RETENTION)
    await wait_agreed([node], lab, voters=1, within=15)
    async with client_for(node, lab.admin_identity) as client:
        job = await client.submit_job(
            types_pb2.JobSpec(
                name="short",
                runtime=types_pb2.JOB_RUNTIME_PROCESS,
                command=["echo", "kept after the queue forgot"],
            )
        )
        await eventually(
            lambda: client.get_job(job.id, timeout=10),
            lambda j: j.state == types_pb2.JOB_STATE_SUCCEEDED,
            within=45,
            what="the job to succeed",
        )
        await eventually(
            lambda: client.list_jobs(timeout=10),
            lambda jobs: job.id not in [j.id for j in jobs],
            within=45,
            what="the queue to forget the ended job",
        )
        shown = await client.get_job(job.id, timeout=10)
        assert shown.archived
        assert shown.state == types_pb2.JOB_STATE_SUCCEEDED
        every = await client.list_jobs(include_archived=True, timeout=10)
        assert [j.id for j in every] == [job.id]

    show = lab.murmur("job", "show", job.id, "--node", node.address)
    assert show.returncode == 0, show.stderr
    assert "state: succeeded" in show.stdout
    assert "archived" in show.stdout
    listed = lab.murmur("job", "list", "--all", "--json", "--node", node.address)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job.id]
    logs = lab.murmur("job", "logs", job.id, "--node", node.address)
    assert logs.returncode == 0, logs.stderr
    assert "kept after the queue forgot" in logs.stdout

    # The archive is the node's SQLite: it outlives the daemon.
    node.terminate()
    node = lab.restart(node)
    await wait_agreed([node], lab, voters=1, within=15)
    again = lab.murmur("job", "show", job.id, "--json", "--node", node.address)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["archived"] is True
