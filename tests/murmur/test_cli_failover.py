"""When the node the CLI (or a client) talks to goes away, it asks another node of
the cluster, and repeats there only what is safe to repeat.

Two real nodes: node-1 leads and holds the only GPUs, node-2 is the node the CLI is
pointed at. A fake node in the test passes calls on to node-1 and dies before it
answers, for the calls that were sent and lost on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

import murmur
from murmur.certs import Role
from murmur.v1 import cluster_pb2_grpc, types_pb2
from tests.support.cluster import host_of, mtls_channel, provision_node
from tests.support.nodes import Lab, NodeProcess, create_lab, free_port, read_bundle


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Lab, NodeProcess, NodeProcess]]:
    lab = create_lab(tmp_path_factory.mktemp("failover"))
    try:
        first = lab.start_node(
            "node-1",
            data_dir=lab.first_data_dir,
            host=host_of(1),
            extra_args=["--simulate-gpus", "2xA100-80GB"],
            wait=False,
        )
        second = lab.start_node(
            "node-2",
            data_dir=provision_node(lab, "node-2", host_of(2)),
            host=host_of(2),
            extra_args=["--seed", first.address],
            wait=False,
        )
        first.wait_ready()
        second.wait_ready()
        yield lab, first, second
    finally:
        lab.stop_all()


def established_to(pid: int, address: str) -> bool:
    """Whether process ``pid`` holds an established TCP connection to ``address``
    (an IPv4 one; gRPC dials it from an IPv6 socket, as ``::ffff:a.b.c.d``)."""
    host, port = address.rsplit(":", 1)
    remote = "{:08X}:{:04X}".format(
        int.from_bytes(bytes(int(part) for part in host.split(".")), "little"), int(port)
    )
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(remote) and fields[3] == "01" and fields[9] in inodes:
                return True
    return False


def test_the_cli_asks_another_node_when_its_node_dies(
    pair: tuple[Lab, NodeProcess, NodeProcess],
) -> None:
    lab, first, second = pair

    def murmur_at(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
        return lab.murmur(*args[:2], "--node", node.address, *args[2:])

    # `status` through node-2 once node-2 sees the cluster: the CLI remembers both.
    deadline = time.monotonic() + 30
    while True:
        status = json.loads(murmur_at(second, "status", "--json").stdout)
        if status["leader"] == "node-1" and len(status["nodes"]) == 2:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    # A job that runs on node-1 (node-2 has no GPUs) until told to end, waited for
    # through node-2.
    go = lab.root / "go"
    job_id = murmur_at(
        second, "job", "submit", "--gpus", "1", "--runtime", "process",
        "--", "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 5",
    ).stdout.strip()  # fmt: skip
    env = {**lab.env, "MURMUR_IDENTITY": str(lab.admin_identity)}
    waiter = subprocess.Popen(
        [sys.executable, "-m", "murmur", "job", "wait", job_id, "--node", second.address],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not established_to(waiter.pid, second.address):
            assert waiter.poll() is None, waiter.communicate()
            time.sleep(0.05)
        second.kill()  # while the wait is on
        go.touch()
        _, stderr = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 5, stderr
    assert f"asking {first.address} instead" in stderr

    # Later commands through the dead node: answered by node-1, with one line saying so.
    answered = murmur_at(second, "status", "--json")
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["answered_by"] == "node-1"
    assert answered.stderr.splitlines() == [
        f"murmur: node {second.address} cannot be reached; asking {first.address} instead"
    ]
    submitted = murmur_at(
        second, "job", "submit", "--name", "after", "--runtime", "process", "--", "true"
    )
    assert submitted.returncode == 0, submitted.stderr
    listed = json.loads(murmur_at(first, "job", "list", "--json").stdout)["jobs"]
    assert [job["id"] for job in listed if job["spec"]["name"] == "after"] == [
        submitted.stdout.strip()
    ]

    # Without anything remembered, nothing else to ask: the usual one-line error.
    forgotten = dict(env, MURMUR_HOME=str(lab.root / "fresh-home"))
    alone = subprocess.run(
        [sys.executable, "-m", "murmur", "status", "--node", second.address],
        env=forgotten, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert alone.returncode == 1
    assert alone.stderr.startswith(f"murmur: error: cannot reach node {second.address}")


class DiesBeforeAnswering(cluster_pb2_grpc.ClusterServiceServicer):
    """A node that passes SubmitJob and CancelJob on to a real node, then goes away
    without answering: the call reached the cluster, the caller cannot know it."""

    def __init__(self, real: NodeProcess, identity: Path) -> None:
        self.real, self.bundle = real, read_bundle(identity)
        self.received: list[Any] = []
        self.passed_on: list[Any] = []
        self.server: grpc.aio.Server | None = None
        self.stopping: list[asyncio.Future[None]] = []
        self.timers: list[asyncio.TimerHandle] = []

    async def _pass_on_and_die(self, method: str, request: Any, context: Any) -> Any:
        self.received.append(request)
        if not self.passed_on:
            async with mtls_channel(self.real, self.bundle) as channel:
                stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                self.passed_on.append(await getattr(stub, method)(request, timeout=10))
            self.timers.append(asyncio.get_running_loop().call_later(0.02, self._die))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")

    def _die(self) -> None:
        assert self.server is not None
        self.stopping.append(asyncio.ensure_future(self.server.stop(None)))

    async def SubmitJob(self, request: Any, context: Any) -> Any:
        return await self._pass_on_and_die("SubmitJob", request, context)

    async def CancelJob(self, request: Any, context: Any) -> Any:
        return await self._pass_on_and_die("CancelJob", request, context)


@contextlib.asynccontextmanager
async def node_that_dies(
    lab: Lab, real: NodeProcess
) -> AsyncIterator[tuple[str, DiesBeforeAnswering]]:
    node = DiesBeforeAnswering(real, lab.admin_identity)  # type: ignore[abstract]
    bundle = lab.ca.issue(
        name="fake", role=Role.NODE, validity_days=1, node_addresses=["127.0.0.1"]
    )
    server = grpc.aio.server()
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(node, server)
    address = f"127.0.0.1:{free_port()}"
    credentials = grpc.ssl_server_credentials(
        [(bundle.key_pem, bundle.certificate_chain_pem)],
        root_certificates=bundle.ca_certificate_pem,
        require_client_auth=True,
    )
    server.add_secure_port(address, credentials)
    node.server = server
    await server.start()
    try:
        yield address, node
    finally:
        for timer in node.timers:
            timer.cancel()
        await server.stop(None)
        await asyncio.gather(*node.stopping)


def client_via(
    address: str, real: NodeProcess, lab: Lab, moves: list[tuple[str, str]]
) -> murmur.AsyncClient:
    config = murmur.ConnectConfig(
        address=address,
        tls=murmur.TLSConfig.from_identity_file(lab.admin_identity),
        fallback_addresses=(real.address,),
    )
    return murmur.AsyncClient(config, on_failover=lambda *move: moves.append(move))


async def test_a_submission_lost_on_the_way_is_repeated_elsewhere_as_the_same_job(
    pair: tuple[Lab, NodeProcess, NodeProcess],
) -> None:
    lab, first, _ = pair
    moves: list[tuple[str, str]] = []
    spec = types_pb2.JobSpec(
        name="lost-answer", command=["true"], runtime=types_pb2.JOB_RUNTIME_PROCESS
    )
    async with (
        node_that_dies(lab, first) as (address, fake),
        client_via(address, first, lab, moves) as client,
    ):
        job = await client.submit_job(spec)
        assert client.address == first.address
        jobs = await client.list_jobs()
    assert moves == [(address, first.address)]
    assert len(fake.passed_on) == 1
    assert job.id == fake.passed_on[0].id  # the job the lost call made, not a second one
    assert {request.idempotency_key for request in fake.received} != {""}
    assert [j.id for j in jobs if j.spec.name == "lost-answer"] == [job.id]


async def test_a_cancel_lost_on_the_way_is_not_repeated(
    pair: tuple[Lab, NodeProcess, NodeProcess],
) -> None:
    lab, first, _ = pair
    async with murmur.AsyncClient(
        murmur.resolve_connect_config(node=first.address, identity=lab.admin_identity)
    ) as direct:
        spec = types_pb2.JobSpec(command=["sleep", "60"], runtime=types_pb2.JOB_RUNTIME_PROCESS)
        job = await direct.submit_job(spec)
        moves: list[tuple[str, str]] = []
        async with (
            node_that_dies(lab, first) as (address, fake),
            client_via(address, first, lab, moves) as client,
        ):
            with pytest.raises(murmur.Unavailable):
                await client.cancel_job(job.id, reason="once")
        assert len(fake.received) == 1  # sent once, not again to the fake nor to node-1
        assert moves == []
        shown = await direct.get_job(job.id)
    # It reached the cluster, once: the cancel's own line, "cancelled by admin: once"
    # (the job still pending) or "...; stopping the run" (already running, when the
    # run's end adds "run R: cancelled by admin: once" after it).
    cancels = [e for e in shown.history if e.message.startswith("cancelled by admin: once")]
    assert len(cancels) == 1, shown.history
