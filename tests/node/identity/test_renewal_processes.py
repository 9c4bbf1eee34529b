"""A node renews its certificate before it expires, with no call or stream dropped.

node-2 starts with a certificate past two thirds of its life; a client holds a
WatchJobs stream and a running job's log stream (``job logs -f``) through it; node-2
has a voter sign a new certificate, writes it, serves it from the next handshake,
and both streams go on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from murmur.certs import IdentityBundle, Role, generate_private_key, make_csr, private_key_pem
from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import wait_agreed
from tests.support.cluster import client_for, eventually, host_of
from tests.support.nodes import Lab, NodeProcess

ENV = {"MURMUR_NODE_CERT_RENEW_CHECK_SECONDS": "4"}


def near_expiry_node(lab: Lab, name: str, host: str) -> Path:
    """A data dir whose node certificate expires in 10 minutes (a day-long one)."""
    data_dir = lab.root / name
    data_dir.mkdir(mode=0o700)
    key = generate_private_key()
    signed_at = datetime.now(UTC) - timedelta(days=1) + timedelta(minutes=10)
    certificate = lab.ca.sign_csr(
        make_csr(key, name),
        name=name,
        role=Role.NODE,
        validity_days=1,
        node_addresses=[host],
        now=signed_at,
    )
    IdentityBundle(private_key_pem(key), certificate, lab.ca.certificate_pem).write(
        data_dir / "identity.pem"
    )
    return data_dir


def served_serial(node: NodeProcess, lab: Lab, tmp_path: Path) -> str:
    """The serial of the certificate ``node`` presents to a new connection."""
    admin = IdentityBundle.read(lab.admin_identity)
    (tmp_path / "admin.key").write_bytes(admin.key_pem)
    (tmp_path / "admin.crt").write_bytes(admin.certificate_pem)
    context = ssl.create_default_context(cadata=admin.ca_certificate_pem.decode())
    context.check_hostname = False
    context.load_cert_chain(tmp_path / "admin.crt", tmp_path / "admin.key")
    context.set_alpn_protocols(["h2"])
    host, port = node.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


async def test_a_node_renews_while_a_stream_through_it_goes_on(lab: Lab, tmp_path: Path) -> None:
    first = lab.start_node("node-1", data_dir=lab.first_data_dir, host=host_of(1), env=ENV)
    data_dir = near_expiry_node(lab, "node-2", host_of(2))
    old = IdentityBundle.read(data_dir / "identity.pem").identity
    second = lab.start_node(
        "node-2", data_dir=data_dir, host=host_of(2), extra_args=["--seed", first.address], env=ENV
    )
    await wait_agreed([first, second], lab, voters=1)
    received: list[types_pb2.Job] = []
    ticks: list[str] = []
    async with client_for(second, lab.admin_identity) as client:
        stream = client.watch_jobs(timeout=120)

        async def follow() -> None:
            async for job in stream:
                received.append(job)

        ticking = await client.submit_job(
            types_pb2.JobSpec(
                name="ticks",
                command=["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo tick $i; "
                         "i=$((i+1)); sleep 0.1; done"],
                runtime=types_pb2.JOB_RUNTIME_PROCESS,
            ),
            timeout=10,
        )  # fmt: skip

        async def follow_log() -> None:
            async for line in client.stream_logs(ticking.id, follow=True, timeout=120):
                if line.stream == types_pb2.LOG_STREAM_STDOUT:
                    ticks.append(line.text)

        watching = asyncio.create_task(follow())
        tailing = asyncio.create_task(follow_log())
        try:
            await eventually(
                lambda: _count(ticks), lambda n: n > 0, within=20, what="the job's first line"
            )
        finally:
            if tailing.done():
                tailing.result()  # the log stream's own error, if it failed
        await asyncio.sleep(0.5)
        assert served_serial(second, lab, tmp_path) == old.serial, "renewed too early"

        async def renewed_serial() -> str:
            return IdentityBundle.read(data_dir / "identity.pem").identity.serial

        new = await eventually(renewed_serial, lambda s: s != old.serial, within=30, what="renewal")
        bundle = IdentityBundle.read(data_dir / "identity.pem")
        assert bundle.identity.not_after > old.not_after + timedelta(days=30)
        assert bundle.identity.role is Role.NODE
        # New handshakes get the new certificate; the open stream goes on.
        assert served_serial(second, lab, tmp_path) == new
        async with client_for(first, lab.admin_identity) as submitter:
            job = await submitter.submit_job(
                types_pb2.JobSpec(name="after-renewal", command=["true"]), timeout=10
            )

        async def seen() -> bool:
            return any(j.id == job.id for j in received)

        await eventually(seen, bool, within=20, what="the stream delivers the new job")
        assert not watching.done()
        # The log stream, opened before the renewal, still brings new lines.
        before = len(ticks)
        await eventually(
            lambda: _count(ticks), lambda n: n > before + 5, within=10, what="more log lines"
        )
        assert not tailing.done()
        assert ticks == [f"tick {i}" for i in range(len(ticks))]  # none lost, none twice
        watching.cancel()
        tailing.cancel()
        await client.cancel_job(ticking.id, timeout=10)
    # The renewed node still talks to the cluster, over new channels.
    status = await eventually(
        lambda: _status(second, lab), lambda s: s is not None and len(s) == 2, within=20,
        what="node-2 answers with both nodes",
    )  # fmt: skip
    assert status is not None


async def _count(lines: list[str]) -> int:
    return len(lines)


async def _status(node: NodeProcess, lab: Lab) -> list[str] | None:
    try:
        async with client_for(node, lab.admin_identity) as client:
            return [n.name for n in await client.list_nodes(timeout=5)]
    except Exception:
        return None
