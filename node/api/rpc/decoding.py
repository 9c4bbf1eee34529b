"""Requests whose bytes do not parse are refused as INVALID_ARGUMENT, not crashes.

gRPC decodes a request before any handler or interceptor wrapper runs; a
``DecodeError`` there ends the call in ``UNKNOWN`` with a Python exception name and
a traceback in the node's log. This interceptor swaps each method's decoder for
one that turns the error into a `MalformedRequest` value, which the method's
wrapper refuses with a message naming the expected type. Installed inside the
status interceptor (which maps the refusal) and outside audit and authorization,
which need a parsed request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from murmur.node.errors import InvalidArgumentError

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


@dataclass(frozen=True)
class MalformedRequest:
    """What a request decoded to when its bytes are not a valid message."""

    type_name: str
    error: str

    def refusal(self) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"the request is not a valid {self.type_name} message ({self.error})"
        )


def tolerant_decoder(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``decode``, returning a `MalformedRequest` where it would raise."""
    owner = getattr(decode, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    type_name = getattr(descriptor, "full_name", "request")

    def decoded(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as exc:
            return MalformedRequest(type_name, str(exc).split(":")[-1].strip() or "corrupt")

    return decoded


def _checked(request: Any) -> Any:
    if isinstance(request, MalformedRequest):
        raise request.refusal()
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses requests that do not decode, for every kind of method."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler: Any = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # type: ignore[no-any-return]
        decode = tolerant_decoder(handler.request_deserializer)
        if handler.unary_unary is not None:
            unary_behavior = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                return await unary_behavior(_checked(request), context)

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=decode, unary_unary=unary
            )
        if handler.unary_stream is not None:
            stream_behavior = handler.unary_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                async for response in stream_behavior(_checked(request), context):
                    yield response

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=decode, unary_stream=stream
            )
        if handler.stream_unary is not None:
            ingest_behavior = handler.stream_unary

            async def ingest(requests: AsyncIterator[Any], context: Context) -> Any:
                return await ingest_behavior(_checked_stream(requests), context)

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=decode, stream_unary=ingest
            )
        duplex_behavior = handler.stream_stream

        async def duplex(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async for response in duplex_behavior(_checked_stream(requests), context):
                yield response

        return handler._replace(  # type: ignore[no-any-return]
            request_deserializer=decode, stream_stream=duplex
        )
