"""Private by default, in real daemons (issue 14): a job's env values and logs are
its owner's and the admins'; other members and viewers see the rest of it; a
secret's value reaches the run and no answer, whoever asks, through any node."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import grpc.aio
import pytest

import murmur
from murmur.certs import Role
from murmur.node.api.services.job_visibility import REDACTED
from murmur.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2
from tests.node.control.consensus.test_consensus_processes import wait_agreed
from tests.support.cluster import client_for, eventually, mtls_channel, start_cluster
from tests.support.nodes import Lab, NodeProcess, read_bundle

TOKEN = "hf-token-4c1d"
SECRET = "api-key-9f2e"
FILE_SECRET = "db-pass-77a0"
OUTPUT = f"hf={TOKEN} key={SECRET} db={FILE_SECRET}"


def assert_no_secret_value(job: types_pb2.Job) -> None:
    assert not job.spec.secrets
    assert sorted(job.spec.secret_names) == ["API_KEY", "DB_PASS"]
    wire = job.SerializeToString()
    assert SECRET.encode() not in wire
    assert FILE_SECRET.encode() not in wire


def assert_env(job: types_pb2.Job, *, private: bool) -> None:
    assert_no_secret_value(job)
    assert list(job.spec.env) == ["HF_TOKEN"]
    assert job.spec.env["HF_TOKEN"] == (TOKEN if private else REDACTED)
    # The rest is everyone's.
    assert job.user == "alice"
    assert job.spec.command[0] == "sh"
    assert job.state == types_pb2.JOB_STATE_SUCCEEDED
    assert job.runs
    assert job.runs[-1].node.startswith("node-")
    assert job.history


async def reads(node: NodeProcess, identity: Path, job_id: str) -> list[types_pb2.Job]:
    """The job as GetJob, ListJobs and WatchJobs answer it through ``node``."""
    async with client_for(node, identity) as client:
        got = await client.get_job(job_id, timeout=10)
        listed = [j for j in await client.list_jobs(timeout=10) if j.id == job_id]
        watched = None
        async for job in client.watch_jobs(timeout=10):
            if job.id == job_id:
                watched = job
                break
    assert watched is not None
    assert len(listed) == 1
    return [got, listed[0], watched]


async def log_text(node: NodeProcess, identity: Path, job_id: str) -> str:
    async with client_for(node, identity) as client:
        return "\n".join([line.text async for line in client.stream_logs(job_id, timeout=10)])


async def test_env_values_and_logs_are_private_and_secrets_shown_to_nobody(
    lab: Lab, tmp_path: Path
) -> None:
    nodes = start_cluster(lab, 2)
    await wait_agreed(nodes, lab, voters=1)
    alice = lab.issue_identity("alice", Role.MEMBER)
    bob = lab.issue_identity("bob", Role.MEMBER)
    vera = lab.issue_identity("vera", Role.VIEWER)
    secret_file = tmp_path / "db-pass"
    secret_file.write_text(FILE_SECRET + "\n")

    submitted = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", nodes[1].address,
        "--env", f"HF_TOKEN={TOKEN}", "--secret", f"API_KEY={SECRET}",
        "--secret-file", f"DB_PASS={secret_file}",
        "--", "sh", "-c", 'echo "hf=$HF_TOKEN key=$API_KEY db=$DB_PASS"',
        identity=alice,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    async with client_for(nodes[0], alice) as client:
        await eventually(
            lambda: client.get_job(job_id, timeout=10),
            lambda job: job.state == types_pb2.JOB_STATE_SUCCEEDED,
            within=45,
            what="alice's job to succeed",
        )

    # Through either node (one of them forwards to the leader, one relays the log).
    for node in nodes:
        for identity, private in ((alice, True), (lab.admin_identity, True)):
            for job in await reads(node, identity, job_id):
                assert_env(job, private=private)
            assert OUTPUT in await log_text(node, identity, job_id)
        for identity in (bob, vera):
            for job in await reads(node, identity, job_id):
                assert_env(job, private=False)
            with pytest.raises(murmur.PermissionDenied, match="only they and admins"):
                await log_text(node, identity, job_id)

    # A user cannot skip the check by naming the run alone, even at the run's node.
    async with client_for(nodes[0], alice) as client:
        run = (await client.get_job(job_id, timeout=10)).runs[-1]
    run_node = next(node for node in nodes if node.name == run.node)
    async with mtls_channel(run_node, read_bundle(bob)) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.StreamLogs(cluster_pb2.StreamLogsRequest(run_id=run.id)):
                pass
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # The CLI, as the viewer.
    shown = lab.murmur("job", "show", job_id, "--json", "--node", nodes[0].address, identity=vera)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spec"]["env"] == {"HF_TOKEN": REDACTED}
    assert json.loads(shown.stdout)["spec"]["secret_names"] == ["API_KEY", "DB_PASS"]
    for value in (TOKEN, SECRET, FILE_SECRET):
        assert value not in shown.stdout
    logs = lab.murmur("job", "logs", job_id, "--node", nodes[0].address, identity=vera)
    assert logs.returncode == 1
    assert "only they and admins may read its logs" in logs.stderr
    assert TOKEN not in logs.stdout
    # And as the owner: the env, the secrets' names, never their values.
    mine = lab.murmur("job", "show", job_id, "--node", nodes[0].address, identity=alice)
    assert mine.returncode == 0, mine.stderr
    assert f"env: HF_TOKEN={TOKEN}" in mine.stdout
    assert "secrets: API_KEY, DB_PASS (values never shown)" in mine.stdout
    assert SECRET not in mine.stdout
