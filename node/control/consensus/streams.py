"""`RaftSender`: Raft messages to peers, in order, on one long-lived
``NodeService.RaftStream`` per peer.

A unary call per message pays an HTTP/2 stream's setup, headers, the server's
interceptors and grpc's per-call work on both sides; with a leader heartbeating
every follower and every follower answering, that was most of an idle daemon's
CPU (issue 11). On a stream a message costs one write and one read.

Per peer address there is an outbox and a task (its pump) that opens the stream
at the first message, writes what the outbox holds in order, and ends the stream
after ``idle_close`` seconds without a message. Delivery is best effort, as Raft
expects (it resends whatever is not answered):

- a write that is not done within ``write_timeout`` (the peer stopped reading: a
  stalled process, a lost host) ends the stream, and what waits is dropped;
- a stream that ended under a message that it did not carry (the peer restarted
  or stopped; the connection broke) is opened again for that message, once: a
  restarted voter still gets the vote request. A stream that fails at its first
  message drops what waits: a dead peer costs one attempt per message, as a call
  did, never a loop of retries;
- a peer that does not know ``RaftStream`` (``UNIMPLEMENTED``: an older version,
  during a rolling upgrade) gets one ``NodeService.Raft`` call per message for
  ``UNARY_FALLBACK_SECONDS``, then the stream is tried again;
- at most ``max_queued`` messages wait per peer; beyond that the oldest go.

The stream runs inside :meth:`PeerTransport.call`, so a refused connection drops
the peer's channel as any call's would (the next message connects afresh).

What is lost on the way is not an error to Raft, but it is counted
(:attr:`RaftSender.stats`) and logged at debug level, with the peer's address: a
failed stream or call, the messages dropped with it. A pump that raises (a bug) is
logged with its traceback and counted too.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc
import grpc.aio

from murmur.node.membership.errors import TransportClosedError
from murmur.node.membership.transport import SendOutcome
from murmur.v1 import node_pb2

if TYPE_CHECKING:
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.consensus")

WRITE_TIMEOUT_SECONDS = 1.0
"""Longest wait for one message's write (as long as a Raft call's deadline was): a
peer that reads nothing for that long is stalled or gone, and what Raft sent it
meanwhile is stale."""

IDLE_CLOSE_SECONDS = 60.0
"""A stream that carried nothing for this long ends (a follower's stream to another
follower carries only election traffic); the next message opens another."""

MAX_QUEUED = 256
"""Messages that may wait for one peer; a leader sends at most a few per heartbeat
interval to each, so this fills only while a write is blocked."""

FIRST_KEPT = 8
"""A stream's first messages kept until it is known to work: a peer without
RaftStream refuses it only after the first writes, and gets them by calls then."""

UNARY_FALLBACK_SECONDS = 60.0
"""How long a peer that answered UNIMPLEMENTED gets unary calls before the stream
is tried again (it may have been upgraded meanwhile)."""


@dataclass(slots=True)
class RaftSendStats:
    """Counters since the sender was made, for logs, status and tests."""

    sends_failed: int = 0
    """Streams and unary calls that failed: the peer refused, did not answer in
    time, or answered an error."""
    messages_dropped: int = 0
    """Messages that never reached their peer: their stream or call failed, a write
    stalled, or the peer's outbox was full."""
    pumps_failed: int = 0
    """Pumps that raised (a bug): each logged with its traceback."""


class StreamTransport(Protocol):
    """The peer channels (:class:`~murmur.node.membership.transport.PeerTransport`)."""

    async def call(
        self, address: str, invoke: Callable[[NodeServiceAsyncStub], Awaitable[object]]
    ) -> SendOutcome: ...


@dataclass(slots=True)
class _Outbox:
    """What waits for one peer, and the task that sends it."""

    queue: collections.deque[node_pb2.RaftRequest] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a message is queued."""
    pump: asyncio.Task[None] | None = None


class _Reopen(Exception):
    """The stream ended under a message it did not carry: send it on a new one."""


class _NoStream(Exception):
    """The peer answered UNIMPLEMENTED: it has no RaftStream."""


class RaftSender:
    """Carries Raft messages to peers (see the module doc).

    Args:
        transport: the shared peer channels.
        write_timeout: longest wait for one message's write.
        idle_close: end a stream after this long without a message.
        max_queued: most messages waiting per peer (the oldest are dropped).
    """

    def __init__(
        self,
        transport: StreamTransport,
        *,
        write_timeout: float = WRITE_TIMEOUT_SECONDS,
        idle_close: float = IDLE_CLOSE_SECONDS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._transport = transport
        self._write_timeout = write_timeout
        self._idle_close = idle_close
        self._max_queued = max_queued
        self._outboxes: dict[str, _Outbox] = {}
        self._unary_until: dict[str, float] = {}
        """Peer address → monotonic time until which it gets unary calls (it answered
        that it has no RaftStream)."""
        self._closed = False
        self._stats = RaftSendStats()

    @property
    def open_peers(self) -> int:
        """Peers with a pump (a stream open, or about to be)."""
        return len(self._outboxes)

    @property
    def stats(self) -> RaftSendStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    def send(self, address: str, request: node_pb2.RaftRequest) -> None:
        """Queue ``request`` for the peer at ``address``; never blocks."""
        if self._closed:
            return
        outbox = self._outboxes.get(address)
        if outbox is None:
            outbox = self._outboxes[address] = _Outbox()
        if len(outbox.queue) >= self._max_queued:
            outbox.queue.popleft()
            self._stats.messages_dropped += 1
        outbox.queue.append(request)
        outbox.ready.set()
        if outbox.pump is None:
            outbox.pump = asyncio.create_task(self._pump(address, outbox))

    async def close(self) -> None:
        """Stop every pump (their streams are cancelled) and wait for them."""
        self._closed = True
        pumps = [outbox.pump for outbox in self._outboxes.values() if outbox.pump is not None]
        self._outboxes.clear()
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    # --- one peer ---------------------------------------------------------------------

    async def _pump(self, address: str, outbox: _Outbox) -> None:
        try:
            while outbox.queue:
                if time.monotonic() < self._unary_until.get(address, -1.0):
                    await self._send_unary(address, outbox)
                    continue
                self._unary_until.pop(address, None)
                try:
                    outcome = await self._transport.call(
                        address, lambda stub: self._stream(stub, outbox)
                    )
                except _Reopen:
                    continue
                except _NoStream:
                    self._unary_until[address] = time.monotonic() + UNARY_FALLBACK_SECONDS
                    _log.info(
                        "%s has no RaftStream (an older version): Raft calls for %g s",
                        address,
                        UNARY_FALLBACK_SECONDS,
                    )
                    continue
                if outcome is not SendOutcome.OK:
                    self._note_failed_send(address, "stream", outcome)
        except TransportClosedError:
            pass
        except Exception:
            self._stats.pumps_failed += 1
            self._stats.messages_dropped += len(outbox.queue)
            _log.exception(
                "raft stream to %s failed",
                address,
                extra={"event": "consensus.send_pump_failed", "failures": self._stats.pumps_failed},
            )
        finally:
            if self._outboxes.get(address) is outbox:
                del self._outboxes[address]

    async def _stream(self, stub: NodeServiceAsyncStub, outbox: _Outbox) -> None:
        """Write the outbox's messages on one stream until it idles or fails.

        Raises:
            _Reopen: the stream ended under an unsent message after carrying others.
            _NoStream: the peer has no RaftStream; what waits goes by unary calls.
            grpc.aio.AioRpcError: it failed at its first message (the transport
                classifies it); what waits is dropped.
        """
        call = stub.RaftStream(None)  # written to with call.write()
        carried = 0
        first: list[node_pb2.RaftRequest] = []  # a peer without RaftStream saw none
        try:
            while True:
                if not outbox.queue:
                    outbox.ready.clear()
                    try:
                        async with asyncio.timeout(self._idle_close):
                            await outbox.ready.wait()
                    except TimeoutError:
                        await call.done_writing()
                        await call
                        return
                try:
                    async with asyncio.timeout(self._write_timeout):
                        await call.write(outbox.queue[0])
                except TimeoutError:
                    # The call was cancelled with the write; the peer reads nothing.
                    self._drop_waiting(outbox)
                    return
                request = outbox.queue.popleft()
                carried += 1
                if carried <= FIRST_KEPT:
                    first.append(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            error = await _ending(call, exc)
            if error is not None and error.code() is grpc.StatusCode.UNIMPLEMENTED:
                outbox.queue.extendleft(reversed(first))
                raise _NoStream from None
            if carried:
                raise _Reopen from None
            self._drop_waiting(outbox)
            if error is not None:
                raise error from None
        finally:
            if not call.done():
                call.cancel()

    async def _send_unary(self, address: str, outbox: _Outbox) -> None:
        """One ``NodeService.Raft`` call per waiting message (a peer of an older version)."""
        requests = list(outbox.queue)
        outbox.queue.clear()

        async def one(request: node_pb2.RaftRequest) -> None:
            outcome = await self._transport.call(
                address, lambda stub: stub.Raft(request, timeout=self._write_timeout)
            )
            if outcome is not SendOutcome.OK:
                self._stats.messages_dropped += 1
                self._note_failed_send(address, "call", outcome)

        await asyncio.gather(*(one(request) for request in requests))

    def _drop_waiting(self, outbox: _Outbox) -> None:
        """What waits for a peer that does not read goes: Raft sends it again."""
        self._stats.messages_dropped += len(outbox.queue)
        outbox.queue.clear()

    def _note_failed_send(self, address: str, kind: str, outcome: SendOutcome) -> None:
        self._stats.sends_failed += 1
        _log.debug(
            "raft %s to %s failed: %s",
            kind,
            address,
            outcome.value,
            extra={"event": "consensus.send_failed", "failures": self._stats.sends_failed},
        )


async def _ending(
    call: grpc.aio.StreamUnaryCall[node_pb2.RaftRequest, node_pb2.RaftResponse],
    exc: BaseException,
) -> grpc.aio.AioRpcError | None:
    """Why a stream's write failed: its error status, or ``None`` when the peer ended
    it normally (it is stopping)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc
    if not call.done():
        return None
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    return None
