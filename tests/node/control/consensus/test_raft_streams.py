"""Raft messages on one stream per peer (node/control/consensus/streams.py) into the daemon's
own handler (PeerServicer.RaftStream) behind its identity, status and authorization
interceptors, over mutual TLS on loopback, in this process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from murmur.certs import NODE_TLS_NAME, CertificateAuthority, IdentityBundle, Role
from murmur.node.api.rpc.interceptors import (
    AuthorizationInterceptor,
    IdentityInterceptor,
    StatusInterceptor,
)
from murmur.node.api.services.peer import PeerServicer
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.streams import RaftSender
from murmur.node.control.drain import NodeDrain
from murmur.node.membership import MembershipRunner, PeerTransport
from murmur.node.membership.transport import SendOutcome
from murmur.v1 import node_pb2, node_pb2_grpc
from tests.support.nodes import free_port

HOST = "127.0.0.1"
SERVER_OPTIONS = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]
"""The node server's keepalive settings (node/api/server.py), and no port sharing: a
restarted test server takes its predecessor's port."""
Context = grpc.aio.ServicerContext[Any, Any]


def message(number: int) -> node_pb2.RaftRequest:
    answer = node_pb2.RaftAppendAnswer(term=1, follower="b", success=True, match_index=number)
    return node_pb2.RaftRequest(from_address="127.0.0.9:1", append_answer=answer)


@dataclass
class Inbox:
    """What PeerServicer hands Raft messages to (ConsensusRunner.receive)."""

    received: list[int] = field(default_factory=list)

    def receive(self, request: node_pb2.RaftRequest) -> None:
        self.received.append(request.append_answer.match_index)


@dataclass
class Leaving:
    """MembershipRunner.leaving, the handler's sign that the node is stopping."""

    leaving: bool = False


class View:
    local_name = "peer"


class CountingServicer(PeerServicer):
    def __init__(self, inbox: Inbox, membership: Leaving | None = None) -> None:
        super().__init__(
            view=cast(ClusterView, View()),
            drain=cast(NodeDrain, None),
            membership=cast(MembershipRunner, membership),
            consensus=cast(ConsensusRunner, inbox),
        )
        self.streams = 0

    async def RaftStream(
        self, request_iterator: AsyncIterator[node_pb2.RaftRequest], context: Context
    ) -> node_pb2.RaftResponse:
        self.streams += 1
        return await super().RaftStream(request_iterator, context)


def unary_only(inbox: Inbox) -> grpc.GenericRpcHandler[Any, Any]:
    """NodeService of a version before RaftStream: it serves Raft, and grpc answers
    UNIMPLEMENTED for a method it does not have."""

    async def raft(request: node_pb2.RaftRequest, context: Context) -> node_pb2.RaftResponse:
        inbox.receive(request)
        return node_pb2.RaftResponse()

    handler = grpc.unary_unary_rpc_method_handler(
        raft,
        request_deserializer=node_pb2.RaftRequest.FromString,
        response_serializer=node_pb2.RaftResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler("murmur.v1.NodeService", {"Raft": handler})


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def node_bundle(ca: CertificateAuthority, name: str) -> IdentityBundle:
    return ca.issue(name=name, role=Role.NODE, validity_days=1, node_addresses=[HOST])


async def serve(
    ca: CertificateAuthority,
    servicer: node_pb2_grpc.NodeServiceServicer | grpc.GenericRpcHandler[Any, Any],
    port: int,
) -> grpc.aio.Server:
    """The daemon's interceptors (less audit: Raft is not audited) over mutual TLS."""
    bundle = node_bundle(ca, "peer")
    server = grpc.aio.server(
        interceptors=[IdentityInterceptor(), StatusInterceptor(), AuthorizationInterceptor()],
        options=SERVER_OPTIONS,
    )
    if isinstance(servicer, node_pb2_grpc.NodeServiceServicer):
        node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
    else:
        server.add_generic_rpc_handlers((servicer,))
    credentials = grpc.ssl_server_credentials(
        [(bundle.key_pem, bundle.certificate_pem)],
        root_certificates=bundle.ca_certificate_pem,
        require_client_auth=True,
    )
    assert server.add_secure_port(f"{HOST}:{port}", credentials)
    await server.start()
    return server


class CountingTransport:
    """A PeerTransport that counts the calls made through it."""

    def __init__(self, transport: PeerTransport) -> None:
        self.inner = transport
        self.calls = 0

    async def call(self, address: str, invoke: Callable[[Any], Awaitable[object]]) -> SendOutcome:
        self.calls += 1
        return await self.inner.call(address, invoke)


@pytest.fixture
async def transport(ca: CertificateAuthority) -> AsyncIterator[CountingTransport]:
    peers = PeerTransport(node_bundle(ca, "sender"))
    try:
        yield CountingTransport(peers)
    finally:
        await peers.close()


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_messages_arrive_in_order_on_one_stream(
    ca: CertificateAuthority, transport: CountingTransport
) -> None:
    port = free_port(HOST)
    inbox = Inbox()
    servicer = CountingServicer(inbox)
    server = await serve(ca, servicer, port)
    sender = RaftSender(transport)
    try:
        for number in range(200):
            sender.send(f"{HOST}:{port}", message(number))
            if number % 20 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: len(inbox.received) == 200)
        assert inbox.received == list(range(200))
        assert servicer.streams == 1
        assert transport.calls == 1
    finally:
        await sender.close()
        await server.stop(None)


async def test_only_nodes_may_stream_raft(ca: CertificateAuthority, tmp_path: Path) -> None:
    port = free_port(HOST)
    inbox = Inbox()
    server = await serve(ca, CountingServicer(inbox), port)
    try:
        for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
            user = ca.issue(name=f"a-{role.value}", role=role, validity_days=1)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=user.ca_certificate_pem,
                private_key=user.key_pem,
                certificate_chain=user.certificate_pem,
            )
            options = [("grpc.ssl_target_name_override", NODE_TLS_NAME)]
            async with grpc.aio.secure_channel(f"{HOST}:{port}", credentials, options) as channel:
                stub = node_pb2_grpc.NodeServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.RaftStream(iter([message(1), message(2)]), timeout=5)
                assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
                assert "RaftStream needs one of: node" in (refused.value.details() or "")
        assert inbox.received == []
    finally:
        await server.stop(None)


async def test_a_restarted_peer_gets_the_message_that_found_the_stream_ended(
    ca: CertificateAuthority, transport: CountingTransport
) -> None:
    port = free_port(HOST)
    address = f"{HOST}:{port}"
    first = Inbox()
    server = await serve(ca, CountingServicer(first), port)
    sender = RaftSender(transport)
    try:
        sender.send(address, message(1))
        await until(lambda: first.received == [1])
        await server.stop(None)
        second = Inbox()
        server = await serve(ca, CountingServicer(second), port)
        await asyncio.sleep(0.2)  # the old stream has seen its connection go
        sender.send(address, message(2))
        await until(lambda: second.received == [2])
    finally:
        await sender.close()
        await server.stop(None)


async def test_a_peer_without_the_stream_gets_raft_calls(
    ca: CertificateAuthority, transport: CountingTransport
) -> None:
    port = free_port(HOST)
    inbox = Inbox()
    server = await serve(ca, unary_only(inbox), port)
    sender = RaftSender(transport)
    try:
        for number in range(5):
            sender.send(f"{HOST}:{port}", message(number))
            await asyncio.sleep(0.02)
        await until(lambda: len(inbox.received) == 5)
        # The stream's first message went before the peer refused the stream: it
        # is sent again by a call.
        assert sorted(inbox.received) == list(range(5))
    finally:
        await sender.close()
        await server.stop(None)


async def test_a_dead_peer_costs_one_attempt_per_message_and_no_task_stays(
    transport: CountingTransport,
) -> None:
    address = f"{HOST}:{free_port(HOST)}"  # nobody listens
    sender = RaftSender(transport)
    try:
        for number in range(5):
            sender.send(address, message(number))
            await asyncio.sleep(0.1)
        await until(lambda: sender.open_peers == 0)
        assert 1 <= transport.calls <= 5
        stats = sender.stats
        assert stats.sends_failed >= 1  # counted, not lost without a trace
        assert 1 <= stats.messages_dropped <= 5
        assert stats.pumps_failed == 0
    finally:
        await sender.close()


class BrokenTransport:
    """A transport with a bug: every call raises."""

    async def call(self, address: str, invoke: Callable[[Any], Awaitable[object]]) -> SendOutcome:
        raise RuntimeError("a bug in the transport")


async def test_a_pump_that_raises_is_logged_with_its_traceback_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = RaftSender(BrokenTransport())  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.ERROR, logger="murmur.consensus"):
            sender.send("peer:1", message(1))
            sender.send("peer:1", message(2))
            await until(lambda: sender.open_peers == 0)
        assert (sender.stats.pumps_failed, sender.stats.messages_dropped) == (1, 2)
        (record,) = caplog.records
        assert record.getMessage() == "raft stream to peer:1 failed"
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
    finally:
        await sender.close()


class StalledTransport:
    """A peer whose stream never opens."""

    async def call(self, address: str, invoke: Callable[[Any], Awaitable[object]]) -> SendOutcome:
        await asyncio.Event().wait()
        return SendOutcome.OK


async def test_messages_an_overflowing_outbox_drops_are_counted() -> None:
    sender = RaftSender(StalledTransport(), max_queued=2)  # type: ignore[arg-type]
    try:
        for number in range(5):
            sender.send("peer:1", message(number))
        assert sender.stats.messages_dropped == 3
    finally:
        await sender.close()


async def test_an_idle_stream_ends_and_the_next_message_opens_another(
    ca: CertificateAuthority, transport: CountingTransport
) -> None:
    port = free_port(HOST)
    inbox = Inbox()
    servicer = CountingServicer(inbox)
    server = await serve(ca, servicer, port)
    sender = RaftSender(transport, idle_close=0.1)
    try:
        sender.send(f"{HOST}:{port}", message(1))
        await until(lambda: sender.open_peers == 0)
        sender.send(f"{HOST}:{port}", message(2))
        await until(lambda: inbox.received == [1, 2])
        assert servicer.streams == 2
    finally:
        await sender.close()
        await server.stop(None)


async def test_a_leaving_node_ends_its_streams_so_its_server_stops_at_once(
    ca: CertificateAuthority, transport: CountingTransport
) -> None:
    port = free_port(HOST)
    inbox = Inbox()
    leaving = Leaving()
    server = await serve(ca, CountingServicer(inbox, leaving), port)
    sender = RaftSender(transport)
    address = f"{HOST}:{port}"

    async def heartbeats() -> None:
        for number in range(1000):
            sender.send(address, message(number))
            await asyncio.sleep(0.05)

    beating = asyncio.create_task(heartbeats())
    try:
        await until(lambda: len(inbox.received) >= 2)
        leaving.leaving = True
        started = time.monotonic()
        await server.stop(5.0)
        assert time.monotonic() - started < 1.0
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await sender.close()
