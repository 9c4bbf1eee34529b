"""Refusing revoked certificates: on every call, and on the streams already open.

The TLS handshake proves a certificate chains to the lab CA and is in its
validity period; whether the lab has since revoked it is the deny list's word
(node/deny_list.py), which changes while connections stay open. So the check runs
on every call, just inside the identity interceptor (the caller's parsed identity
is cached per certificate, node/api/rpc/caller.py; the check is not: two dict
lookups against the list as it is now). A refused call is answered
UNAUTHENTICATED ("the node does not accept your certificate"), with which
certificate was revoked, when, by whom and why. It is not audited: a revoked
node's gossip would flood the audit log; the revocation itself is.

A stream outlives the check at its start (``job logs -f``, the Watch streams,
RaftStream). :class:`OpenCalls` holds every open stream with its caller; when the
list grows, each one whose caller it now refuses is ended with the same status:
the call's task is cancelled while it waits inside the handler, and the wrapper
turns that cancellation (its own, and only its own) into the refusal. A stream
caught while gRPC is sending a message is ended at the next message instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from murmur.certs import CertificateIdentity
from murmur.node.api.rpc.caller import current_caller
from murmur.node.api.rpc.interceptors import (
    Context,
    DuplexBehavior,
    IngestBehavior,
    StreamBehavior,
    UnaryBehavior,
    _WrappingInterceptor,
)
from murmur.node.deny_list import DenyList, Revocation, refusal_message

REFUSAL_CODE = grpc.StatusCode.UNAUTHENTICATED


@dataclass(eq=False)
class OpenCall:
    """One open stream: whose, which task serves it, and whether it was refused."""

    caller: CertificateIdentity
    task: asyncio.Task[Any] | None
    waiting_in_handler: bool = False
    """True while the task waits inside the handler (not inside gRPC's send): a
    cancellation then lands where the wrapper can turn it into the refusal."""
    refusal: str | None = None
    cancelled: bool = field(default=False)


class OpenCalls:
    """Every open stream by caller; ends those of callers the deny list refuses."""

    def __init__(self, deny_list: DenyList) -> None:
        self._deny = deny_list
        self._calls: set[OpenCall] = set()
        deny_list.add_listener(self._revoked)

    def __len__(self) -> int:
        return len(self._calls)

    @contextlib.contextmanager
    def open(self, caller: CertificateIdentity) -> Iterator[OpenCall]:
        call = OpenCall(caller=caller, task=asyncio.current_task())
        self._calls.add(call)
        try:
            yield call
        finally:
            self._calls.discard(call)

    def _revoked(self, added: list[Revocation]) -> None:
        for call in list(self._calls):
            if call.refusal is not None:
                continue
            revocation = self._deny.refusal(call.caller)
            if revocation is None:
                continue
            call.refusal = refusal_message(call.caller, revocation)
            if call.waiting_in_handler and call.task is not None and not call.task.done():
                call.cancelled = True
                call.task.cancel()


def _refuse_if_revoked(deny_list: DenyList, caller: CertificateIdentity) -> str | None:
    revocation = deny_list.refusal(caller)
    return None if revocation is None else refusal_message(caller, revocation)


async def _refuse(context: Context, message: str) -> Any:
    await context.abort(REFUSAL_CODE, message)


def _take_back_cancel(call: OpenCall) -> bool:
    """Whether the cancellation being raised is ours (the call was refused): then it
    is taken back, so the refusal can be sent."""
    if not call.cancelled or call.refusal is None:
        return False
    call.cancelled = False
    if call.task is not None:
        call.task.uncancel()
    return True


class RevocationInterceptor(_WrappingInterceptor):
    """Refuses callers whose certificate the deny list holds, and ends their streams.

    Installed just inside the identity interceptor, whose caller it reads.
    """

    def __init__(self, deny_list: DenyList, open_calls: OpenCalls | None = None) -> None:
        self._deny = deny_list
        self.open_calls = open_calls if open_calls is not None else OpenCalls(deny_list)

    def wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        deny = self._deny

        async def unary(request: Any, context: Context) -> Any:
            refusal = _refuse_if_revoked(deny, current_caller())
            if refusal is not None:
                await _refuse(context, refusal)
            return await behavior(request, context)

        return unary

    def wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        deny = self._deny
        open_calls = self.open_calls

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            caller = current_caller()
            refusal = _refuse_if_revoked(deny, caller)
            if refusal is not None:
                await _refuse(context, refusal)
            with open_calls.open(caller) as call:
                responses = behavior(request, context)
                try:
                    while True:
                        call.waiting_in_handler = True
                        try:
                            response = await anext(responses)
                        except StopAsyncIteration:
                            return
                        except asyncio.CancelledError:
                            if not _take_back_cancel(call):
                                raise
                            break
                        finally:
                            call.waiting_in_handler = False
                        if call.refusal is not None:
                            break
                        yield response
                        if call.refusal is not None:  # refused while gRPC sent it
                            break
                finally:
                    await _close_quietly(responses)
                assert call.refusal is not None
                await _refuse(context, call.refusal)

        return stream

    def wrap_ingest(self, method: str, behavior: IngestBehavior) -> IngestBehavior:
        deny = self._deny
        open_calls = self.open_calls

        async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
            caller = current_caller()
            refusal = _refuse_if_revoked(deny, caller)
            if refusal is not None:
                await _refuse(context, refusal)
            with open_calls.open(caller) as call:
                call.waiting_in_handler = True
                try:
                    return await behavior(requests, context)
                except asyncio.CancelledError:
                    if not _take_back_cancel(call):
                        raise
                finally:
                    call.waiting_in_handler = False
                assert call.refusal is not None
                await _refuse(context, call.refusal)

        return ingest

    def wrap_duplex(self, method: str, behavior: DuplexBehavior) -> DuplexBehavior:
        return self.wrap_stream(method, behavior)


async def _close_quietly(responses: AsyncIterator[Any]) -> None:
    """Closes the handler's generator (its ``finally`` blocks run now, not at garbage
    collection)."""
    close = getattr(responses, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
