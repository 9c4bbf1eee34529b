"""Against a real node with the default account settings: a member's process job runs
as the member's Unix account and cannot read a root-only file; a user without an
account, or one mapped to root, is refused with the reason — never run as root.

Needs root (to create an account); skips elsewhere with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from murmur import AsyncClient
from murmur.certs import Role
from murmur.node.agent.runtimes.base import RunAccount
from murmur.v1 import types_pb2
from tests.support.accounts import STRICT_NODE_ENV
from tests.support.cluster import client_for, eventually
from tests.support.nodes import Lab, NodeProcess, lab_fixture
from tests.support.unix_accounts import reachable_directory, unix_account

ENDED = {
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
    types_pb2.JOB_STATE_CANCELLED,
    types_pb2.JOB_STATE_LOST,
}


@pytest.fixture
def member() -> Iterator[RunAccount]:
    with unix_account() as account:
        yield account


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Below a directory the job's account may pass through (pytest's is private):
    it reaches its scratch dir in the node's data dir by path."""
    with reachable_directory() as root:
        yield from lab_fixture(root)


@pytest.fixture
def strict_node(lab: Lab) -> NodeProcess:
    """A node with the default settings; ``mapped-to-root``'s jobs would run as root."""
    return lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        extra_args=["--job-account", "mapped-to-root=root"],
        env=STRICT_NODE_ENV,
    )


async def run_job(client: AsyncClient, script: str) -> types_pb2.Job:
    spec = types_pb2.JobSpec(
        name="whoami", command=["/bin/sh", "-c", script], runtime=types_pb2.JOB_RUNTIME_PROCESS
    )
    job = await client.submit_job(spec, timeout=10)
    return await eventually(
        lambda: client.get_job(job.id, timeout=5),
        lambda found: found.state in ENDED,
        within=30,
        what=f"job {job.id} ended",
    )


async def log_of(client: AsyncClient, job_id: str) -> dict[str, list[str]]:
    """The job's output lines by stream (``stdout``, ``stderr``, ``system``)."""
    streams: dict[str, list[str]] = {}
    async for line in client.stream_logs(job_id, timeout=10):
        name = types_pb2.LogStream.Name(line.stream).removeprefix("LOG_STREAM_").lower()
        streams.setdefault(name, []).append(line.text)
    return streams


async def test_a_members_job_runs_as_the_member_and_not_as_root(
    lab: Lab, strict_node: NodeProcess, member: RunAccount
) -> None:
    identity = lab.issue_identity(member.name, Role.MEMBER)
    secret = lab.root / "root-only"
    secret.write_text("root's own\n")
    secret.chmod(0o600)

    async with client_for(strict_node, identity) as client:
        job = await run_job(client, f"id -un; id -u; cat {secret}")
        log = await log_of(client, job.id)

    assert job.state == types_pb2.JOB_STATE_FAILED, job.reason
    assert job.exit_code == 1
    assert log["stdout"] == [member.name, str(member.uid)]
    assert any("Permission denied" in line for line in log["stderr"])


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ("nobody-here", "user 'nobody-here' has no Unix account on node node-1"),
        ("mapped-to-root", "user 'mapped-to-root' maps to root on node node-1"),
    ],
)
async def test_a_user_without_an_acceptable_account_is_refused_with_the_reason(
    lab: Lab, strict_node: NodeProcess, user: str, reason: str
) -> None:
    identity = lab.issue_identity(user, Role.MEMBER)

    async with client_for(strict_node, identity) as client:
        job = await run_job(client, "id -u")

    assert job.state == types_pb2.JOB_STATE_FAILED
    assert reason in job.reason
    assert not job.HasField("exit_code") or job.exit_code != 0
