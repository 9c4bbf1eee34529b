"""An in-memory network for the daemon's objects in one event loop: what
:class:`~murmur.node.membership.transport.PeerTransport` carries over gRPC and mutual
TLS (gossip, Raft streams, forwarded proposals and reads) is handed straight to the
receiving node's own servicers.

A node serves its ``NodeService`` servicer (and its ``ClusterService`` one, if it
has one) at an address with :meth:`MemoryNetwork.serve`, and sends through its own
:class:`MemoryTransport`, which has the methods of ``PeerTransport`` that the
daemon's objects use: ``send`` (gossip), ``call`` (Raft's streams), ``node_stub``
and ``cluster_stub`` (forwarded writes and reads), ``close``. What a real server
does around a handler is done here too:

- the handler runs as a task of its own, with the caller's identity set
  (``current_caller()``: the sending node, or the user of a client made with
  :meth:`MemoryNetwork.transport`), as the identity interceptor would set it;
- an exception that escapes it reaches the caller as ``grpc.aio.AioRpcError`` with
  the status the daemon's own map gives it (``status_for``, as the status
  interceptor does);
- a call's ``timeout`` cancels the handler and fails the call with
  ``DEADLINE_EXCEEDED``; a caller cancelled cancels the handler;
- an address where nothing is served refuses the connection, in the words gRPC
  uses, so ``PeerTransport``'s own classification reports ``SendOutcome.REFUSED``
  (a stopped node's port); :meth:`MemoryNetwork.stop` ends the node's handlers in
  flight and its streams with ``UNAVAILABLE``, as a killed process does.

Not modelled: the authorization policy (any caller may call anything), TLS, message
sizes, flow control (a stream's writes never block) and delay (a message is
handled on the next turns of the loop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from murmur.certs import CertificateIdentity, Role
from murmur.node.api.rpc.caller import set_current_caller
from murmur.node.api.rpc.status_map import status_for
from murmur.node.membership.errors import TransportClosedError
from murmur.node.membership.transport import SendOutcome, classify_error
from murmur.v1 import cluster_pb2, node_pb2

if TYPE_CHECKING:
    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

NODE_SERVICE = "NodeService"
CLUSTER_SERVICE = "ClusterService"

_METHODS = {
    NODE_SERVICE: node_pb2.DESCRIPTOR.services_by_name[NODE_SERVICE],
    CLUSTER_SERVICE: cluster_pb2.DESCRIPTOR.services_by_name[CLUSTER_SERVICE],
}


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """A failed call as grpc.aio raises it."""
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string=details
    )


def refused(address: str) -> grpc.aio.AioRpcError:
    """What gRPC says when nothing listens at ``address``."""
    return rpc_error(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: "
        f"{address}: Failed to connect to remote host: Connection refused",
    )


def identity(name: str, role: Role = Role.NODE) -> CertificateIdentity:
    """The identity a certificate of the lab CA would give its holder."""
    now = datetime.now(UTC)
    return CertificateIdentity(
        name=name,
        role=role,
        serial="0",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )


class _Context:
    """The little of a ``grpc.aio.ServicerContext`` the daemon's handlers read."""

    def __init__(self, caller: str) -> None:
        self._caller = caller

    def peer(self) -> str:
        return f"memory:{self._caller}"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None

    def set_code(self, code: grpc.StatusCode) -> None:
        """What the generated base servicer calls before raising NotImplementedError."""

    def set_details(self, details: str) -> None:
        """As :meth:`set_code`."""


async def _mapped(handle: Callable[[], Awaitable[Any]]) -> Any:
    """A unary or ingesting handler's answer; what escapes it, as a status. The
    handler's coroutine is made here, in its task: a task cancelled before it ran
    (its node stopped) leaves no coroutine that was never awaited."""
    try:
        return await handle()
    except Exception as exc:
        code, message = status_for(exc)
        raise rpc_error(code, message) from None


@dataclass(eq=False)
class _Server:
    """What listens at one address: its servicers and the handlers running there."""

    address: str
    servicers: dict[str, object]
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def behaviour(self, service: str, method: str) -> Callable[..., Any] | None:
        servicer = self.servicers.get(service)
        return None if servicer is None else cast(Callable[..., Any], getattr(servicer, method))

    def start(
        self, work: Coroutine[Any, Any, Any], caller: CertificateIdentity
    ) -> asyncio.Task[Any]:
        """Run one handler as its own task, the caller's identity set in its context."""
        context = contextvars.copy_context()
        context.run(set_current_caller, caller)
        task = asyncio.get_running_loop().create_task(work, context=context)
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        return task


class _Requests:
    """A client stream's requests, as its handler reads them (``async for``)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = False

    def put(self, request: Any) -> None:
        self._queue.put_nowait(request)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        request = await self._queue.get()
        if request is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return request


class _ClientStream:
    """A client-streaming call (``RaftStream``) as grpc.aio hands it to the caller:
    ``write``, ``done_writing``, ``done``, ``cancel``, and awaited for the answer."""

    def __init__(
        self, address: str, server: _Server | None, method: str, caller: CertificateIdentity
    ) -> None:
        self._address = address
        self._requests = _Requests()
        self._task: asyncio.Task[Any] | None = None
        behaviour = server.behaviour(NODE_SERVICE, method) if server is not None else None
        if server is not None and behaviour is not None:
            requests, context = self._requests, _Context(caller.name)
            work = _mapped(lambda: behaviour(requests, context))
            self._task = server.start(work, caller)

    async def write(self, request: Any) -> None:
        task = self._task
        if task is None:
            raise refused(self._address)
        if task.done():
            error = self._error(task)
            if error is not None:
                raise error
            raise asyncio.InvalidStateError("RPC already finished")
        self._requests.put(request)

    async def done_writing(self) -> None:
        self._requests.end()

    def done(self) -> bool:
        return self._task is None or self._task.done()

    def cancel(self) -> bool:
        if self._task is None or self._task.done():
            return False
        self._task.cancel()
        return True

    def __await__(self) -> Any:
        return self._answer().__await__()

    async def _answer(self) -> Any:
        task = self._task
        if task is None:
            raise refused(self._address)
        await asyncio.wait([task])
        error = self._error(task)
        if error is not None:
            raise error
        return task.result()

    def _error(self, task: asyncio.Task[Any]) -> grpc.aio.AioRpcError | None:
        if task.cancelled():
            return rpc_error(grpc.StatusCode.UNAVAILABLE, f"{self._address} closed the stream")
        error = task.exception()
        return error if isinstance(error, grpc.aio.AioRpcError) else None


_END = object()


class _ServerStream:
    """A server-streaming call's responses as the caller reads them (``async for``);
    the handler runs ahead of the reader, as gRPC's does up to its window."""

    def __init__(
        self,
        address: str,
        server: _Server | None,
        behaviour: Callable[..., AsyncGenerator[Any, None]] | None,
        request: Any,
        caller: CertificateIdentity,
    ) -> None:
        self._address = address
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        if server is not None and behaviour is not None:
            context = _Context(caller.name)
            self._task = server.start(self._produce(lambda: behaviour(request, context)), caller)

    async def _produce(self, handle: Callable[[], AsyncGenerator[Any, None]]) -> None:
        try:
            responses = handle()
            async with contextlib.aclosing(responses):
                async for response in responses:
                    self._responses.put_nowait(response)
        except Exception as exc:
            code, message = status_for(exc)
            raise rpc_error(code, message) from None
        finally:
            self._responses.put_nowait(_END)

    def cancel(self) -> bool:
        if self._task is None or self._task.done():
            return False
        self._task.cancel()
        return True

    def __del__(self) -> None:
        # gRPC cancels a call its caller dropped (a relay that ended): so does this.
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()

    def __aiter__(self) -> _ServerStream:
        return self

    async def __anext__(self) -> Any:
        task = self._task
        if task is None:
            raise refused(self._address)
        response = await self._responses.get()
        if response is not _END:
            return response
        self._responses.put_nowait(_END)
        await asyncio.wait([task])
        if task.cancelled():
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"{self._address} closed the stream")
        error = task.exception()
        if error is not None:
            raise error
        raise StopAsyncIteration


class MemoryNetwork:
    """Addresses and the servicers listening there, in one event loop."""

    def __init__(self) -> None:
        self._servers: dict[str, _Server] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        """Calls that reached a servicer, by method name (``"Propose"``...)."""

    def serve(self, address: str, *, node: object, cluster: object | None = None) -> None:
        """Listen at ``address``: ``node`` answers NodeService, ``cluster``
        ClusterService (calls to a service not given are refused as unimplemented)."""
        if address in self._servers:
            raise ValueError(f"{address} is already served")
        servicers = {NODE_SERVICE: node}
        if cluster is not None:
            servicers[CLUSTER_SERVICE] = cluster
        self._servers[address] = _Server(address, servicers)

    def serves(self, address: str) -> bool:
        return address in self._servers

    async def stop(self, address: str) -> None:
        """Stop listening at ``address`` (a killed process): its handlers in flight
        end, their callers get ``UNAVAILABLE``, new calls are refused."""
        server = self._servers.pop(address, None)
        if server is not None:
            await _cancel_all(server.handlers)

    async def close(self) -> None:
        """Stop every address."""
        for address in list(self._servers):
            await self.stop(address)

    def transport(self, name: str, role: Role = Role.NODE) -> MemoryTransport:
        """The channels of node ``name`` (the identity its calls carry); with another
        role, a user's (a client calling ``cluster_stub(address).SubmitJob(...)``)."""
        return MemoryTransport(self, identity(name, role))

    # --- calls ------------------------------------------------------------------------

    def _server(self, address: str) -> _Server | None:
        return self._servers.get(address)

    async def unary(
        self,
        address: str,
        service: str,
        method: str,
        request: Any,
        caller: CertificateIdentity,
        timeout: float | None,  # noqa: ASYNC109 - the call's deadline, as gRPC takes it
    ) -> Any:
        server = self._server(address)
        if server is None:
            raise refused(address)
        behaviour = server.behaviour(service, method)
        if behaviour is None:
            raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, f"{address} serves no {service}")
        self.calls[method] += 1
        context = _Context(caller.name)
        handler = server.start(_mapped(lambda: behaviour(request, context)), caller)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait([handler])
        except TimeoutError:
            handler.cancel()
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except asyncio.CancelledError:
            handler.cancel()  # gRPC cancels the server's handler with the call
            raise
        if handler.cancelled():
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"{address} stopped during the call")
        return handler.result()

    def client_stream(
        self, address: str, method: str, caller: CertificateIdentity
    ) -> _ClientStream:
        if self.serves(address):
            self.calls[method] += 1
        return _ClientStream(address, self._server(address), method, caller)

    def server_stream(
        self, address: str, service: str, method: str, request: Any, caller: CertificateIdentity
    ) -> _ServerStream:
        server = self._server(address)
        behaviour = server.behaviour(service, method) if server is not None else None
        if behaviour is not None:
            self.calls[method] += 1
        return _ServerStream(address, server, behaviour, request, caller)


class _Stub:
    """A service's stub on one address: ``stub.Method(request, timeout=...)``."""

    def __init__(
        self, network: MemoryNetwork, address: str, service: str, caller: CertificateIdentity
    ) -> None:
        self._network = network
        self._address = address
        self._service = service
        self._caller = caller

    def __getattr__(self, method: str) -> Callable[..., Any]:
        descriptor = _METHODS[self._service].methods_by_name.get(method)
        if descriptor is None:
            raise AttributeError(f"{self._service} has no method {method}")
        if descriptor.client_streaming:
            return functools.partial(self._client_stream, method)
        if descriptor.server_streaming:
            return functools.partial(self._server_stream, method)
        return functools.partial(self._unary, method)

    def _unary(
        self,
        method: str,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: object = None,
    ) -> Awaitable[Any]:
        return self._network.unary(
            self._address, self._service, method, request, self._caller, timeout
        )

    def _client_stream(
        self, method: str, request_iterator: None = None, **_: object
    ) -> _ClientStream:
        if request_iterator is not None:
            raise NotImplementedError("write to the call instead, as the daemon does")
        return self._network.client_stream(self._address, method, self._caller)

    def _server_stream(self, method: str, request: Any, **_: object) -> _ServerStream:
        return self._network.server_stream(
            self._address, self._service, method, request, self._caller
        )


class MemoryTransport:
    """One node's peer channels on a :class:`MemoryNetwork` (``PeerTransport``'s
    methods the daemon's objects use)."""

    def __init__(self, network: MemoryNetwork, identity: CertificateIdentity) -> None:
        self._network = network
        self._identity = identity
        self._closed = False

    async def send(
        self,
        address: str,
        payload: bytes,
        *,
        from_address: str,
        timeout: float,  # noqa: ASYNC109 - the call's deadline
    ) -> SendOutcome:
        """One gossip payload (``MembershipRunner``'s transport)."""
        request = node_pb2.GossipRequest(from_address=from_address, payload=payload)
        return await self.call(address, lambda stub: stub.Gossip(request, timeout=timeout))

    async def call(
        self, address: str, invoke: Callable[[NodeServiceAsyncStub], Awaitable[object]]
    ) -> SendOutcome:
        """A one-way NodeService call, its failure as an outcome (Raft's streams)."""
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        try:
            await invoke(self.node_stub(address))
        except grpc.aio.AioRpcError as exc:
            return classify_error(exc)
        return SendOutcome.OK

    def node_stub(self, address: str) -> NodeServiceAsyncStub:
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        return cast("NodeServiceAsyncStub", self._stub(address, NODE_SERVICE))

    def cluster_stub(self, address: str) -> ClusterServiceAsyncStub:
        if self._closed:
            raise TransportClosedError("peer transport is closed; cannot send")
        return cast("ClusterServiceAsyncStub", self._stub(address, CLUSTER_SERVICE))

    async def close(self) -> None:
        self._closed = True

    def _stub(self, address: str, service: str) -> _Stub:
        return _Stub(self._network, address, service, self._identity)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
