"""gRPC failures become the client's exception tree, for calls and for streams."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

import murmur
from murmur._errors import error_from_rpc, is_tls_handshake_failure, translate_rpc_errors
from murmur.certs import CertificateAuthority, Role

EXPECTED_CLASS_BY_CODE: dict[grpc.StatusCode, type[murmur.MurmurError]] = {
    grpc.StatusCode.OK: murmur.InternalError,
    grpc.StatusCode.CANCELLED: murmur.Cancelled,
    grpc.StatusCode.UNKNOWN: murmur.InternalError,
    grpc.StatusCode.INVALID_ARGUMENT: murmur.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: murmur.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: murmur.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: murmur.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: murmur.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: murmur.NoCapacity,
    grpc.StatusCode.FAILED_PRECONDITION: murmur.FailedPrecondition,
    grpc.StatusCode.ABORTED: murmur.InternalError,
    grpc.StatusCode.OUT_OF_RANGE: murmur.InvalidArgument,
    grpc.StatusCode.UNIMPLEMENTED: murmur.Unimplemented,
    grpc.StatusCode.INTERNAL: murmur.InternalError,
    grpc.StatusCode.UNAVAILABLE: murmur.Unavailable,
    grpc.StatusCode.DATA_LOSS: murmur.InternalError,
    grpc.StatusCode.UNAUTHENTICATED: murmur.Unauthenticated,
}


def rpc_error(
    code: grpc.StatusCode, details: str = "", debug: str | None = None
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(),
        details=details,
        debug_error_string=debug,
    )


def test_every_status_code_has_an_expected_class() -> None:
    assert set(EXPECTED_CLASS_BY_CODE) == set(grpc.StatusCode)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_each_status_code_maps_to_its_class_and_keeps_the_code(code: grpc.StatusCode) -> None:
    error = error_from_rpc(rpc_error(code, "the node's words", debug="grpc debug text"))

    assert type(error) is EXPECTED_CLASS_BY_CODE[code]
    assert error.code is code
    assert error.details == "grpc debug text"
    assert "the node's words" in error.message
    assert str(error) == error.message


def test_the_nodes_message_is_passed_on_unchanged() -> None:
    error = error_from_rpc(rpc_error(grpc.StatusCode.NOT_FOUND, "no job 'j-42'"))

    assert str(error) == "no job 'j-42'"


def test_an_empty_message_names_the_code() -> None:
    error = error_from_rpc(rpc_error(grpc.StatusCode.ALREADY_EXISTS), address="10.0.0.5:7070")

    assert str(error) == "node 10.0.0.5:7070 answered ALREADY_EXISTS"


def test_unavailable_names_the_node_it_could_not_reach() -> None:
    error = error_from_rpc(
        rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection refused"), address="127.0.0.1:7070"
    )

    assert str(error) == "cannot reach node 127.0.0.1:7070: Connection refused"


def test_unavailable_without_an_address_still_reads_well() -> None:
    error = error_from_rpc(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection refused"))

    assert str(error) == "cannot reach the node: Connection refused"


def test_a_failed_tls_handshake_suggests_the_likely_cause() -> None:
    details = (
        "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED"
    )

    error = error_from_rpc(rpc_error(grpc.StatusCode.UNAVAILABLE, details), address="h:1")

    assert "is your identity from this cluster's CA?" in str(error)
    assert is_tls_handshake_failure(rpc_error(grpc.StatusCode.UNAVAILABLE, details))
    assert not is_tls_handshake_failure(rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))


def test_deadline_and_authentication_errors_say_which_node() -> None:
    late = error_from_rpc(
        rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), address="h:1"
    )
    rejected = error_from_rpc(
        rpc_error(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked"), address="h:1"
    )

    assert str(late) == "no answer from node h:1 in time: Deadline Exceeded"
    assert str(rejected) == "node h:1 rejected your certificate: certificate revoked"


def test_an_rpc_error_without_a_status_becomes_an_internal_error() -> None:
    error = error_from_rpc(grpc.RpcError())

    assert isinstance(error, murmur.InternalError)
    assert error.code is grpc.StatusCode.UNKNOWN


def test_config_errors_are_murmur_errors_without_a_code() -> None:
    error = murmur.ConfigError("bad address")

    assert isinstance(error, murmur.MurmurError)
    assert error.code is None
    assert error.details is None


class FakeClient:
    """Stands in for AsyncClient: the decorator reads `address` from the first argument."""

    address = "127.0.0.1:7070"

    def __init__(self) -> None:
        self.stream_closed = False

    @translate_rpc_errors
    async def fail(self, code: grpc.StatusCode) -> str:
        raise rpc_error(code, "refused")

    @translate_rpc_errors
    async def echo(self, text: str, *, times: int = 1) -> str:
        return text * times

    @translate_rpc_errors
    async def numbers(self, fail_after: int | None = None) -> AsyncIterator[int]:
        try:
            for number in range(5):
                if number == fail_after:
                    raise rpc_error(grpc.StatusCode.PERMISSION_DENIED, "viewers may not watch")
                yield number
        finally:
            self.stream_closed = True


async def test_a_decorated_coroutine_returns_its_result() -> None:
    assert await FakeClient().echo("ab", times=2) == "abab"


async def test_a_decorated_coroutine_raises_the_translated_error_with_its_cause() -> None:
    with pytest.raises(murmur.Unavailable) as raised:
        await FakeClient().fail(grpc.StatusCode.UNAVAILABLE)

    assert str(raised.value) == "cannot reach node 127.0.0.1:7070: refused"
    assert isinstance(raised.value.__cause__, grpc.RpcError)


async def test_other_exceptions_pass_through_untouched() -> None:
    @translate_rpc_errors
    async def broken() -> None:
        raise KeyError("not a gRPC error")

    with pytest.raises(KeyError):
        await broken()


async def test_cancellation_is_never_translated_or_swallowed() -> None:
    started = asyncio.Event()

    @translate_rpc_errors
    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_decorated_stream_yields_every_item() -> None:
    assert [number async for number in FakeClient().numbers()] == [0, 1, 2, 3, 4]


async def test_an_error_in_the_middle_of_a_stream_is_translated_after_the_items_before_it() -> None:
    client = FakeClient()
    received: list[int] = []

    async def receive_all() -> None:
        async for number in client.numbers(fail_after=2):
            received.append(number)

    with pytest.raises(murmur.PermissionDenied, match="viewers may not watch"):
        await receive_all()

    assert received == [0, 1]
    assert client.stream_closed


async def test_closing_a_decorated_stream_early_closes_the_wrapped_generator_at_once() -> None:
    client = FakeClient()
    stream = client.numbers()
    assert isinstance(stream, AsyncIterator)

    assert await anext(stream) == 0
    await stream.aclose()  # type: ignore[attr-defined]

    assert client.stream_closed


def test_the_decorator_keeps_the_kind_name_and_signature_of_the_function() -> None:
    assert inspect.iscoroutinefunction(FakeClient.echo)
    assert inspect.isasyncgenfunction(FakeClient.numbers)
    assert FakeClient.echo.__name__ == "echo"
    assert list(inspect.signature(FakeClient.echo).parameters) == ["self", "text", "times"]


def test_the_decorator_refuses_a_plain_function() -> None:
    def plain() -> None: ...

    with pytest.raises(TypeError, match="neither a coroutine function nor an async generator"):
        translate_rpc_errors(plain)  # type: ignore[arg-type]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def identity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("identity")
    lab_ca = CertificateAuthority.create(directory / "ca")
    path = directory / "alice.pem"
    lab_ca.issue(name="alice", role=Role.MEMBER, validity_days=30).write(path)
    return path


async def test_a_real_call_to_a_node_that_is_not_there_raises_unavailable(
    identity_file: Path,
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    config = murmur.ConnectConfig(
        address=address,
        tls=murmur.TLSConfig.from_identity_file(identity_file),
        retry=murmur.RetryConfig(max_attempts=1),
    )

    async with murmur.AsyncClient(config) as client:
        with pytest.raises(murmur.Unavailable) as raised:
            await client.status(timeout=5)

    assert str(raised.value).startswith(f"cannot reach node {address}: ")
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
