"""Server interceptors: the caller's identity and role, audit, and error mapping.

grpc.aio interceptors see only the method name, not the peer's certificate, so
each of ours wraps the method's handler function: the wrapper runs inside the
RPC with its ``context``. Outermost first, the daemon installs
``[Identity, Revocation, Status, Decoding, Audit, Authorization]``:

* identity: read the caller's name and role from its certificate;
* revocation: refuse a revoked certificate on every call, and end its open streams
  when it is revoked (:mod:`murmur.node.api.rpc.revocation`; not audited, or a
  revoked node's gossip would flood the trail);
* status: turn any escaping exception into a deliberate status code;
* decoding: a request that does not parse is INVALID_ARGUMENT, naming the message
  (:mod:`murmur.node.api.rpc.decoding`; not audited: there is no request to record);
* audit: record every state-changing call with who, what, when and result,
  refused ones included (the node's outbox of the cluster's audit trail);
* authorization: refuse unknown methods and roles the policy does not admit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message

from murmur.certs import CertificateIdentity
from murmur.node.api.rpc.caller import (
    caller_from_context,
    current_caller,
    reset_current_caller,
    set_current_caller,
)
from murmur.node.api.rpc.policy import policy_for
from murmur.node.api.rpc.status_map import status_for
from murmur.node.control.queue.api_keys import parse_key
from murmur.node.errors import PermissionDeniedError
from murmur.storage import AuditEntry, Store

_log = logging.getLogger("murmur.node.rpc")

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
IngestBehavior = Callable[[AsyncIterator[Any], Context], Awaitable[Any]]
"""A handler that reads a stream of requests and answers once (RaftStream)."""
DuplexBehavior = Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]]
"""A handler streaming both ways (gRPC's server reflection)."""
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


class _WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Base: wraps the behaviour of every handler it sees, whatever its kind.

    Murmur's RPCs take one request (unary or server-streaming responses), or, for
    RaftStream, a stream of requests answered once; gRPC's reflection streams both
    ways. Each kind has its wrapper shape, so nothing is served without identity,
    status mapping, audit and the policy.
    """

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler: Any = await continuation(handler_call_details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED itself
            return None  # type: ignore[return-value]
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(  # type: ignore[no-any-return]
                unary_unary=self.wrap_unary(method, handler.unary_unary)
            )
        if handler.unary_stream is not None:
            return handler._replace(  # type: ignore[no-any-return]
                unary_stream=self.wrap_stream(method, handler.unary_stream)
            )
        if handler.stream_unary is not None:
            return handler._replace(  # type: ignore[no-any-return]
                stream_unary=self.wrap_ingest(method, handler.stream_unary)
            )
        return handler._replace(  # type: ignore[no-any-return]
            stream_stream=self.wrap_duplex(method, handler.stream_stream)
        )

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        raise NotImplementedError

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        raise NotImplementedError

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        raise NotImplementedError

    def wrap_duplex(self, method: str, behavior: DuplexBehavior) -> DuplexBehavior:
        # Same shape as a server stream: only what the behaviour is given differs.
        return self.wrap_stream(method, behavior)


class IdentityInterceptor(_WrappingInterceptor):
    """Reads the caller's identity from its certificate for the handlers below."""

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def unary(request: Any, context: Context) -> Any:
            try:
                caller = caller_from_context(context)
            except Exception as exc:
                await _abort(context, exc)
            token = set_current_caller(caller)
            try:
                return await behavior(request, context)
            finally:
                reset_current_caller(token)

        return unary

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                caller = caller_from_context(context)
            except Exception as exc:
                await _abort(context, exc)
            token = set_current_caller(caller)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                reset_current_caller(token)

        return stream

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
            try:
                caller = caller_from_context(context)
            except Exception as exc:
                await _abort(context, exc)
            token = set_current_caller(caller)
            try:
                return await behavior(requests, context)
            finally:
                reset_current_caller(token)

        return ingest


def authorize(method: str, caller: CertificateIdentity) -> None:
    """Refuses the call unless the method's policy admits the caller's role.

    Raises:
        PermissionDeniedError: unknown method, or a role the policy does not admit.
    """
    policy = policy_for(method)
    if policy is None:
        raise PermissionDeniedError(f"{method} is not open to any caller")
    if caller.role not in policy.allowed_roles:
        allowed = ", ".join(sorted(role.value for role in policy.allowed_roles))
        raise PermissionDeniedError(
            f"{caller.name} has role {caller.role.value}; {method.rsplit('/', 1)[-1]} "
            f"needs one of: {allowed}"
        )


class AuthorizationInterceptor(_WrappingInterceptor):
    """Enforces the role policy. Innermost, so that refusals are audited too."""

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def unary(request: Any, context: Context) -> Any:
            authorize(method, current_caller())
            return await behavior(request, context)

        return unary

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            authorize(method, current_caller())
            async for response in behavior(request, context):
                yield response

        return stream

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
            authorize(method, current_caller())  # before any request is read
            return await behavior(requests, context)

        return ingest


async def _abort(context: Context, exc: BaseException) -> Any:
    code, message = status_for(exc)
    await context.abort(code, message)


class StatusInterceptor(_WrappingInterceptor):
    """Maps every exception that escapes a handler to a deliberate status code."""

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def unary(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return unary

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return stream

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
            try:
                return await behavior(requests, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return ingest


def _audit_target(request: Message) -> str:
    """What a request acts on: its first non-empty naming field. A whole API key
    pasted where its id belongs is written as its id: the audit trail never holds
    a key."""
    for field_name in ("name", "id", "job_id", "node_name", "token_id"):
        descriptor = request.DESCRIPTOR.fields_by_name.get(field_name)
        if descriptor is not None:
            value = getattr(request, field_name)
            if value:
                key = parse_key(str(value))
                return str(value) if key is None else key[0]
    return ""


AuditRecorder = Callable[[AuditEntry], Awaitable[object]]
"""Where an audited call's entry goes: durable when it returns (``Store.append_audit``,
or the cluster trail's ``AuditTrail.record``, which writes it there and then waits,
briefly, for it to be in the control log)."""


class AuditInterceptor(_WrappingInterceptor):
    """Appends who did what, when, and with what result, for state-changing calls.

    Args:
        recorder: where entries go; the store's local audit table when None.
    """

    def __init__(
        self, store: Store, node_name: str, *, recorder: AuditRecorder | None = None
    ) -> None:
        self._store = store
        self._node_name = node_name
        self._recorder: AuditRecorder = recorder if recorder is not None else store.append_audit

    async def record(
        self, *, method: str, target: str, caller: CertificateIdentity, error: BaseException | None
    ) -> None:
        if error is None:
            result, detail = "OK", ""
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            result, detail = grpc.StatusCode.CANCELLED.name, "the caller cancelled the call"
        else:
            code, detail = status_for(error)
            result = code.name
        try:
            await self._recorder(
                AuditEntry(
                    time=datetime.now(UTC),
                    user=caller.name,
                    role=caller.role.value,
                    action=method.rsplit("/", 1)[-1],
                    target=target,
                    result=result,
                    detail=detail,
                )
            )
        except Exception:
            # The audit write failing must not turn a done change into an
            # error the client would retry; it is logged loudly instead.
            _log.exception("could not write audit record", extra={"method": method})

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        policy = policy_for(method)
        if policy is None or not policy.audited:
            return behavior

        async def unary(request: Any, context: Context) -> Any:
            caller = current_caller()
            try:
                response = await behavior(request, context)
            except Exception as exc:
                await self.record(
                    method=method, target=_audit_target(request), caller=caller, error=exc
                )
                raise
            target = _audit_target(request) or _audit_target(response)
            await self.record(method=method, target=target, caller=caller, error=None)
            return response

        return unary

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        policy = policy_for(method)
        if policy is None or not policy.audited:
            return behavior

        # A stream that changes state (AddDatasetWithProgress) is recorded once,
        # when it ends: done, refused, failed, or given up by its caller. A caller
        # gone while its last message is sent is recorded CANCELLED although the
        # change is done; the stream's own messages say which of them means done.
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            caller = current_caller()
            target = _audit_target(request)
            try:
                async for response in behavior(request, context):
                    target = target or _audit_target(response)
                    yield response
            # GeneratorExit: grpc was cancelled while sending, and closes us later.
            except (Exception, asyncio.CancelledError, GeneratorExit) as exc:
                await self.record(method=method, target=target, caller=caller, error=exc)
                raise
            await self.record(method=method, target=target, caller=caller, error=None)

        return stream

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        policy = policy_for(method)
        if policy is None or not policy.audited:
            return behavior

        async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
            caller = current_caller()
            try:
                response = await behavior(requests, context)
            except Exception as exc:
                await self.record(method=method, target="", caller=caller, error=exc)
                raise
            await self.record(
                method=method, target=_audit_target(response), caller=caller, error=None
            )
            return response

        return ingest

    def wrap_duplex(self, method: str, behavior: DuplexBehavior) -> DuplexBehavior:
        policy = policy_for(method)
        if policy is None or not policy.audited:
            return behavior

        async def duplex(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            caller = current_caller()
            try:
                async for response in behavior(requests, context):
                    yield response
            except (Exception, asyncio.CancelledError, GeneratorExit) as exc:
                await self.record(method=method, target="", caller=caller, error=exc)
                raise
            await self.record(method=method, target="", caller=caller, error=None)

        return duplex
