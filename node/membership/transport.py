"""The node's channels to its peers; gossip datagrams over gRPC, one
``NodeService.Gossip`` call per message. Raft (node/consensus) and the replicated
queue's calls share the same channels: one connection per peer.

Gossip is one-way: the call's empty response only says the peer took the bytes,
and a reply (an ack, a push-pull answer) is the peer's own Gossip call back to
``from_address``. What the caller learns from a send is its :class:`SendOutcome`,
and one outcome matters to the protocol: :attr:`SendOutcome.REFUSED`, the peer's
host answered "nobody listens on that port", which a stalled process or a slow
network never produces, so the membership state machine may suspect the member at
once (``Membership.report_refused``). Anything else that failed (a TLS handshake
refused, a reset, an error status) is :attr:`SendOutcome.OTHER`, and a deadline is
:attr:`SendOutcome.TIMEOUT`: neither says the process is gone.

gRPC reports a refused connection as ``UNAVAILABLE`` whose text holds the socket
error, e.g. "failed to connect to all addresses; last error: UNKNOWN:
ipv4:127.0.0.2:4100: Failed to connect to remote host: Connection refused". The
prefix "failed to connect to all addresses" is also what a failed TLS handshake
says ("... Socket closed"), so only "Connection refused" counts.

Channels are persistent, one per peer address, made lazily inside the running
loop (grpc issue 32480) with the node's own identity (mTLS, server name
``NODE_TLS_NAME``). Each owns its subchannels (``grpc.use_local_subchannel_pool``)
and reconnects within a second, and a channel whose peer refused is dropped, so
the next send makes a fresh connection attempt instead of repeating a stale error
while gRPC backs off: a node restarted on the same address is reachable at once.
Channels unused for ``idle_close_seconds`` are closed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from murmur.certs import NODE_TLS_NAME, IdentityBundle
from murmur.node.membership.errors import TransportClosedError
from murmur.v1 import cluster_pb2_grpc, node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.membership")

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""The node server's limit (node/api/server.py); a full push-pull state of a large
cluster stays far below it."""

KEEPALIVE_TIME_MS = 30_000
"""Ping an idle connection every 30 s: above the server's
``grpc.http2.min_ping_interval_without_data_ms`` (10 s), or it answers GOAWAY
``too_many_pings``."""

KEEPALIVE_TIMEOUT_MS = 10_000

_REFUSED_MARKER = "connection refused"

DROP_GRACE_SECONDS = 15.0
"""How long a dropped channel's other calls may still run before it is closed: more
than any deadline the node sets on a peer call."""


class SendOutcome(enum.Enum):
    """What became of one gossip send."""

    OK = "ok"
    """The peer's server accepted the message."""
    REFUSED = "refused"
    """Nothing listens at the address: the peer's process is gone."""
    TIMEOUT = "timeout"
    """No answer in time: the peer or the network is slow, or the host is down."""
    OTHER = "other"
    """Any other failure (TLS refused, connection reset, an error status)."""


def classify_error(error: grpc.aio.AioRpcError) -> SendOutcome:
    """The outcome a failed Gossip call stands for (see the module doc)."""
    code = error.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return SendOutcome.TIMEOUT
    if code is grpc.StatusCode.UNAVAILABLE:
        text = f"{error.details() or ''} {error.debug_error_string() or ''}".lower()
        if _REFUSED_MARKER in text:
            return SendOutcome.REFUSED
    return SendOutcome.OTHER


def channel_options() -> list[tuple[str, str | int]]:
    """gRPC options of a gossip channel."""
    return [
        ("grpc.ssl_target_name_override", NODE_TLS_NAME),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        # Without this a client stops pinging after two pings that carried no data.
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1_000),
        # A dropped channel's replacement must not inherit a shared subchannel
        # that is still backing off.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


@dataclass(slots=True)
class _Peer:
    channel: grpc.aio.Channel
    stub: NodeServiceAsyncStub
    cluster_stub: ClusterServiceAsyncStub
    last_used: float


class PeerTransport:
    """This node's channels to its peers, over mutual TLS: gossip payloads to
    ``NodeService.Gossip``, Raft messages, and the calls of the replicated queue.

    Args:
        bundle: this node's identity; peers check it (node role, lab CA) and it
            checks theirs. A gRPC channel cannot reload its certificate: a renewed
            one is handed over with :meth:`use_identity`, for the channels made next.
        idle_close_seconds: close a peer's channel after this long unused.
    """

    def __init__(self, bundle: IdentityBundle, *, idle_close_seconds: float = 300.0) -> None:
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle.ca_certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_chain_pem,
        )
        self._idle_close_seconds = idle_close_seconds
        self._peers: dict[str, _Peer] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._next_sweep_at = time.monotonic() + idle_close_seconds
        self._closed = False

    @property
    def open_channels(self) -> int:
        return len(self._peers)

    def use_identity(self, bundle: IdentityBundle, *, retire_after: float) -> None:
        """Channels made from now on present ``bundle`` (a renewed certificate). The
        open ones are set aside: their calls and streams go on, with the old
        certificate, for ``retire_after`` seconds at most, and new calls get new
        channels."""
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle.ca_certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_chain_pem,
        )
        retired, self._peers = list(self._peers.values()), {}
        for peer in retired:
            closing = asyncio.ensure_future(peer.channel.close(retire_after))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def send(
        self,
        address: str,
        payload: bytes,
        *,
        from_address: str,
        timeout: float,  # noqa: ASYNC109 - the RPC's deadline, passed to gRPC
    ) -> SendOutcome:
        """Deliver one gossip payload to the peer listening at ``address``.

        Errors of the call become outcomes; only cancellation propagates.

        Raises:
            TransportClosedError: :meth:`close` was called.
        """
        request = node_pb2.GossipRequest(from_address=from_address, payload=payload)
        return await self.call(address, lambda stub: stub.Gossip(request, timeout=timeout))

    async def call(
        self, address: str, invoke: Callable[[NodeServiceAsyncStub], Awaitable[object]]
    ) -> SendOutcome:
        """Make one one-way NodeService call on the peer's shared channel: gossip's,
        and Raft's (node/consensus), so a peer costs one connection, not two.

        Raises:
            TransportClosedError: :meth:`close` was called.
        """
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        now = time.monotonic()
        if now >= self._next_sweep_at:
            await self._close_idle(now)
            if self._closed:
                raise TransportClosedError("peer transport is closed; cannot send")
        peer = self._peer(address, now)
        try:
            await invoke(peer.stub)
        except grpc.aio.AioRpcError as exc:
            outcome = classify_error(exc)
            if outcome is SendOutcome.REFUSED:
                await self._drop(address, peer)
            return outcome
        return SendOutcome.OK

    def node_stub(self, address: str) -> NodeServiceAsyncStub:
        """The peer's NodeService on its shared channel, for calls that want an answer
        (the replicated queue's forwarding, assignments and reports). Errors are the
        caller's to handle.

        Raises:
            TransportClosedError: :meth:`close` was called.
        """
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        return self._peer(address, time.monotonic()).stub

    def cluster_stub(self, address: str) -> ClusterServiceAsyncStub:
        """The peer's ClusterService on its shared channel: a node forwards the reads
        it cannot answer (jobs, logs) with its own identity, which may read."""
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        return self._peer(address, time.monotonic()).cluster_stub

    async def close(self) -> None:
        """Close every channel; in-flight sends end as cancelled calls."""
        self._closed = True
        peers, self._peers = list(self._peers.values()), {}
        await asyncio.gather(*(peer.channel.close(None) for peer in peers))
        for closing in list(self._closing):
            closing.cancel()

    def _peer(self, address: str, now: float) -> _Peer:
        peer = self._peers.get(address)
        if peer is None:
            asyncio.get_running_loop()  # a grpc.aio channel belongs to the loop it is made in
            channel = grpc.aio.secure_channel(address, self._credentials, channel_options())
            peer = _Peer(
                channel,
                node_pb2_grpc.NodeServiceStub(channel),
                cluster_pb2_grpc.ClusterServiceStub(channel),
                now,
            )
            self._peers[address] = peer
        peer.last_used = now
        return peer

    async def _drop(self, address: str, peer: _Peer) -> None:
        """Forget the peer's channel so that the next call connects afresh, and close
        it in the background once its other calls had time to end. The channel is
        shared: closing it at once would cancel whatever else is in flight on it (a
        forwarded submission, an assignment), and a cancelled call raises
        CancelledError in its caller, which must never come from another's failure."""
        if self._peers.get(address) is peer:
            del self._peers[address]
        closing = asyncio.ensure_future(peer.channel.close(DROP_GRACE_SECONDS))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close_idle(self, now: float) -> None:
        self._next_sweep_at = now + min(self._idle_close_seconds, 30.0)
        idle = [
            (address, peer)
            for address, peer in self._peers.items()
            if now - peer.last_used >= self._idle_close_seconds
        ]
        for address, peer in idle:
            _log.debug(
                "closing idle gossip channel",
                extra={"event": "membership.channel_idle", "peer": address},
            )
            await self._drop(address, peer)
