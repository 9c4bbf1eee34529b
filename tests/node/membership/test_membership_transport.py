"""PeerTransport against real mTLS servers: what each failure is reported as."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.api.server import _SERVER_OPTIONS
from murmur.node.membership import PeerTransport, SendOutcome, TransportClosedError
from murmur.node.membership.transport import channel_options
from murmur.v1 import node_pb2
from tests.node.membership.gossip_cluster import (
    Context,
    GossipOnlyServicer,
    start_gossip_server,
)


class RecordingServicer(GossipOnlyServicer):
    """Records what arrives; holds each call until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def Gossip(
        self, request: node_pb2.GossipRequest, context: Context
    ) -> node_pb2.GossipResponse:
        self.received.append((request.from_address, request.payload))
        self.arrived.set()
        await self.release.wait()
        return node_pb2.GossipResponse()


def node_bundle(ca: CertificateAuthority, name: str) -> IdentityBundle:
    return ca.issue(name=name, role=Role.NODE, validity_days=30, node_addresses=["127.0.0.1"])


def free_port(host: str) -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_payload_reaches_the_peer_with_the_senders_address(
    lab_ca: CertificateAuthority,
) -> None:
    servicer = RecordingServicer()
    server, address = await start_gossip_server(node_bundle(lab_ca, "b"), "127.0.0.2", servicer)
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    try:
        first = await transport.send(address, b"one", from_address="127.0.0.3:7", timeout=2)
        second = await transport.send(address, b"two", from_address="127.0.0.3:7", timeout=2)
    finally:
        await transport.close()
        await server.stop(0)
    assert (first, second) == (SendOutcome.OK, SendOutcome.OK)
    assert servicer.received == [("127.0.0.3:7", b"one"), ("127.0.0.3:7", b"two")]
    assert transport.open_channels == 0


async def test_a_closed_port_is_refused_and_a_restart_there_is_reached_at_once(
    lab_ca: CertificateAuthority,
) -> None:
    port = free_port("127.0.0.2")
    address = f"127.0.0.2:{port}"
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    server = None
    try:
        assert await transport.send(address, b"x", from_address="a:1", timeout=2) is (
            SendOutcome.REFUSED
        )
        assert transport.open_channels == 0, "a refused channel is dropped"
        # A channel kept after the refusal would still be backing off here and
        # repeat the stale refusal.
        servicer = RecordingServicer()
        server, _ = await start_gossip_server(
            node_bundle(lab_ca, "b"), "127.0.0.2", servicer, port=port
        )
        assert await transport.send(address, b"y", from_address="a:1", timeout=2) is (
            SendOutcome.OK
        )
    finally:
        await transport.close()
        if server is not None:
            await server.stop(0)


async def test_a_stopped_server_is_refused_on_the_existing_channel(
    lab_ca: CertificateAuthority,
) -> None:
    server, address = await start_gossip_server(
        node_bundle(lab_ca, "b"), "127.0.0.2", RecordingServicer()
    )
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    try:
        assert await transport.send(address, b"x", from_address="a:1", timeout=2) is (
            SendOutcome.OK
        )
        await server.stop(0)
        outcomes = [
            await transport.send(address, b"x", from_address="a:1", timeout=2) for _ in range(3)
        ]
    finally:
        await transport.close()
    # The first may meet the closing connection (reset), the next ones the closed port.
    assert outcomes[-1] is SendOutcome.REFUSED
    assert SendOutcome.TIMEOUT not in outcomes


async def test_a_peer_that_does_not_answer_in_time_is_a_timeout_not_a_refusal(
    lab_ca: CertificateAuthority,
) -> None:
    servicer = RecordingServicer()
    servicer.release.clear()
    server, address = await start_gossip_server(node_bundle(lab_ca, "b"), "127.0.0.2", servicer)
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    try:
        outcome = await transport.send(address, b"x", from_address="a:1", timeout=0.2)
    finally:
        servicer.release.set()
        await transport.close()
        await server.stop(0)
    assert outcome is SendOutcome.TIMEOUT


async def test_a_certificate_from_another_ca_is_other_not_refused(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    servicer = RecordingServicer()
    server, address = await start_gossip_server(node_bundle(lab_ca, "b"), "127.0.0.2", servicer)
    foreign = node_bundle(CertificateAuthority.create(tmp_path / "other"), "a")
    stranger = IdentityBundle(
        key_pem=foreign.key_pem,
        certificate_pem=foreign.certificate_pem,
        ca_certificate_pem=lab_ca.certificate_pem,
    )
    transport = PeerTransport(stranger)
    try:
        outcome = await transport.send(address, b"x", from_address="a:1", timeout=2)
    finally:
        await transport.close()
        await server.stop(0)
    assert outcome is SendOutcome.OTHER
    assert servicer.received == []


async def test_a_server_of_another_ca_is_not_trusted(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    impostor = node_bundle(CertificateAuthority.create(tmp_path / "other"), "b")
    servicer = RecordingServicer()
    server, address = await start_gossip_server(impostor, "127.0.0.2", servicer)
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    try:
        outcome = await transport.send(address, b"x", from_address="a:1", timeout=2)
    finally:
        await transport.close()
        await server.stop(0)
    assert outcome is SendOutcome.OTHER
    assert servicer.received == []


async def test_idle_channels_are_closed(lab_ca: CertificateAuthority) -> None:
    servers = [
        await start_gossip_server(node_bundle(lab_ca, "b"), host, RecordingServicer())
        for host in ("127.0.0.2", "127.0.0.3")
    ]
    transport = PeerTransport(node_bundle(lab_ca, "a"), idle_close_seconds=0.0)
    try:
        for _, address in servers:
            assert await transport.send(address, b"x", from_address="a:1", timeout=2) is (
                SendOutcome.OK
            )
        assert transport.open_channels == 1, "the first peer's channel was idle, and closed"
    finally:
        await transport.close()
        for server, _ in servers:
            await server.stop(0)


async def test_sending_after_close_is_an_error(lab_ca: CertificateAuthority) -> None:
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    await transport.close()
    with pytest.raises(TransportClosedError):
        await transport.send("127.0.0.2:1", b"x", from_address="a:1", timeout=1)


def test_the_channel_keepalive_respects_the_servers_minimum_ping_interval() -> None:
    client = dict(channel_options())
    server = dict(_SERVER_OPTIONS)
    minimum = int(server["grpc.http2.min_ping_interval_without_data_ms"])
    assert int(client["grpc.keepalive_time_ms"]) >= minimum


async def test_dropping_a_channel_lets_its_other_calls_finish(lab_ca: CertificateAuthority) -> None:
    # Regression (found by the consensus benchmark): a gossip send refused by a dead
    # peer dropped the shared channel at once, which cancelled a submission being
    # forwarded on it; the CancelledError left the client's call unanswered.
    servicer = RecordingServicer()
    servicer.release.clear()
    server, address = await start_gossip_server(node_bundle(lab_ca, "b"), "127.0.0.2", servicer)
    transport = PeerTransport(node_bundle(lab_ca, "a"))
    try:
        in_flight = asyncio.ensure_future(
            transport.send(address, b"slow", from_address="127.0.0.3:7", timeout=5)
        )
        await asyncio.wait_for(servicer.arrived.wait(), timeout=5)
        await transport._drop(address, transport._peers[address])
        assert transport.open_channels == 0  # the next call connects afresh
        servicer.release.set()
        assert await in_flight == SendOutcome.OK
    finally:
        await transport.close()
        await server.stop(0)
