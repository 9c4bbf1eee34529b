"""The exceptions the Murmur client raises, and the one place gRPC errors become them.

Every failure a caller can act on is a `MurmurError`; the subclass says what kind::

    MurmurError                    code, message, details
    ├── NotFound                   NOT_FOUND: no such job, node or dataset
    ├── AlreadyExists              ALREADY_EXISTS
    ├── PermissionDenied           PERMISSION_DENIED: your role may not do this
    ├── Unauthenticated            UNAUTHENTICATED: the node does not accept your certificate
    ├── InvalidArgument            INVALID_ARGUMENT, OUT_OF_RANGE: fix the request
    ├── FailedPrecondition         FAILED_PRECONDITION: the cluster is not in a state to do it
    ├── NoCapacity                 RESOURCE_EXHAUSTED: the cluster cannot hold more
    ├── Unavailable                UNAVAILABLE: the node cannot be reached (or has no leader)
    ├── DeadlineExceeded           DEADLINE_EXCEEDED: no answer in time
    ├── Cancelled                  CANCELLED
    ├── Unimplemented              UNIMPLEMENTED: this node's murmur does not offer it (yet)
    ├── ConfigError                (no code) local configuration or identity problem
    └── InternalError              INTERNAL, UNKNOWN and every other code: a bug to report

gRPC errors are translated at the client's boundary by `translate_rpc_errors`, so no
`grpc.RpcError` reaches a caller; the original stays available as `__cause__`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "ConfigError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "MurmurError",
    "NoCapacity",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_from_rpc",
    "is_tls_handshake_failure",
    "translate_rpc_errors",
]


class MurmurError(Exception):
    """Base of every error the Murmur client raises.

    Attributes:
        code: The gRPC status code the node answered with; None for local errors.
        message: One line saying what went wrong, for people.
        details: Low-level diagnostics (gRPC's debug string) for bug reports, or None.
    """

    def __init__(
        self, message: str, *, code: grpc.StatusCode | None = None, details: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


class NotFound(MurmurError):
    """The job, run, node or dataset named does not exist."""


class AlreadyExists(MurmurError):
    """Something with that name exists already."""


class PermissionDenied(MurmurError):
    """The caller's role does not allow this operation."""


class Unauthenticated(MurmurError):
    """The node did not accept the caller's certificate (revoked, or from another CA)."""


class InvalidArgument(MurmurError):
    """The request itself is wrong; sending it again will fail again."""


class FailedPrecondition(MurmurError):
    """The request is valid, but the cluster is not in a state where it can be done."""


class NoCapacity(MurmurError):
    """The cluster cannot take more of something (RESOURCE_EXHAUSTED)."""


class Unavailable(MurmurError):
    """The node could not be reached, or could not reach the cluster's leader."""


class DeadlineExceeded(MurmurError):
    """No answer arrived before the call's deadline."""


class Cancelled(MurmurError):
    """The call was cancelled before it finished."""


class Unimplemented(MurmurError):
    """The node's version of murmur does not serve this call (an older node, or a part of
    the contract still to come); the message says which part."""


class ConfigError(MurmurError):
    """A local problem: a bad node address, a missing or expired identity, a bad settings file."""


class InternalError(MurmurError):
    """The node failed in a way it did not expect: please report it with `details`."""


_EXCEPTIONS_BY_CODE: dict[grpc.StatusCode, type[MurmurError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoCapacity,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}

# Substrings of grpc-core's messages for a failed TLS handshake: the usual cause is an
# identity from another cluster's CA, which the bare OpenSSL text does not say.
_TLS_FAILURE_MARKERS = ("handshake", "certificate_verify_failed", "ssl_error")


def error_from_rpc(err: grpc.RpcError, *, address: str | None = None) -> MurmurError:
    """Translates a gRPC error into the matching `MurmurError` subclass.

    Args:
        err: The error a gRPC call raised.
        address: The node the call went to, named in connection errors when given.

    Returns:
        The exception to raise in its place (the caller chains `err` as its cause).
    """
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    text = (err.details() if callable(getattr(err, "details", None)) else None) or ""
    debug = getattr(err, "debug_error_string", None)
    details = debug() if callable(debug) else None
    exception_class = _EXCEPTIONS_BY_CODE.get(code, InternalError)
    return exception_class(_message_for(code, text, address), code=code, details=details)


def _message_for(code: grpc.StatusCode, text: str, address: str | None) -> str:
    """Composes the one-line message: the node's own words, with context where it helps."""
    node = f"node {address}" if address else "the node"
    if code is grpc.StatusCode.UNAVAILABLE:
        message = f"cannot reach {node}: {text or 'unavailable'}"
        if _mentions_tls_failure(text):
            message += " (TLS handshake failed: is your identity from this cluster's CA?)"
        return message
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from {node} in time: {text or 'deadline exceeded'}"
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return f"{node} rejected your certificate: {text or 'unauthenticated'}"
    return text or f"{node} answered {code.name}"


def is_tls_handshake_failure(err: grpc.RpcError) -> bool:
    """Whether `err` reports a failed TLS handshake: UNAVAILABLE, but not transient."""
    details = err.details() if callable(getattr(err, "details", None)) else None
    return _mentions_tls_failure(details or "")


def _mentions_tls_failure(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _TLS_FAILURE_MARKERS)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_Y = TypeVar("_Y")


@overload
def translate_rpc_errors(
    function: Callable[_P, AsyncIterator[_Y]],
) -> Callable[_P, AsyncIterator[_Y]]: ...


@overload
def translate_rpc_errors(
    function: Callable[_P, Coroutine[Any, Any, _R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


def translate_rpc_errors(function: Callable[_P, Any]) -> Callable[_P, Any]:
    """Makes a coroutine function or async generator function raise `MurmurError`s.

    For an async generator (a server stream) an error raised mid-stream is translated
    too, and closing the wrapper closes the wrapped generator at once (which cancels
    its RPC) instead of leaving that to the garbage collector.

    When the first argument has a string attribute `address` (a client), connection
    errors name that node.
    """
    if inspect.isasyncgenfunction(function):

        @functools.wraps(function)
        async def translated_stream(*args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[Any]:
            try:
                async with contextlib.aclosing(function(*args, **kwargs)) as stream:
                    async for item in stream:
                        yield item
            except grpc.RpcError as err:
                raise error_from_rpc(err, address=_address_of(args)) from err

        return translated_stream

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def translated(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            try:
                return await function(*args, **kwargs)
            except grpc.RpcError as err:
                raise error_from_rpc(err, address=_address_of(args)) from err

        return translated

    raise TypeError(f"{function!r} is neither a coroutine function nor an async generator")


def _address_of(args: tuple[object, ...]) -> str | None:
    """The node address of the client whose method was called, if there is one."""
    address = getattr(args[0], "address", None) if args else None
    return address if isinstance(address, str) else None
