"""The revocation interceptor on a real mTLS gRPC server: a revoked certificate is
refused on its next call, and its open streams (server streams and request
streams) end with UNAUTHENTICATED; other callers' streams go on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from murmur.certs import NODE_TLS_NAME, CertificateAuthority, IdentityBundle, Role
from murmur.node.api.rpc.interceptors import IdentityInterceptor, StatusInterceptor
from murmur.node.api.rpc.revocation import RevocationInterceptor
from murmur.node.deny_list import DenyList, Revocation

SERVICE = "test.Revocations"


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = CertificateAuthority.create(tmp_path / "ca")
        self.server_bundle = self.ca.issue(name="n1", role=Role.NODE, validity_days=1)
        self.member = self.ca.issue(name="alice", role=Role.MEMBER, validity_days=1)
        self.other = self.ca.issue(name="bob", role=Role.MEMBER, validity_days=1)
        self.deny = DenyList()
        self.interceptor = RevocationInterceptor(self.deny)
        self.ingest_started = asyncio.Event()
        self.stream_closed = 0
        self.next_index = 1

    def revoke(self, *, name: str = "", serial: str = "") -> None:
        self.deny.merge(
            [Revocation(self.next_index, name, serial, _us(datetime.now(UTC)), "admin", "test")]
        )
        self.next_index += 1

    async def echo(self, request: bytes, context: Any) -> bytes:
        return request

    async def follow(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.stream_closed += 1

    async def chatty(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for number in range(1_000_000):  # never waits: every step is a send
            yield str(number).encode()

    async def ingest(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        count = 0
        async for _ in requests:
            count += 1
            self.ingest_started.set()
        return str(count).encode()

    def server(self) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[IdentityInterceptor(), self.interceptor, StatusInterceptor()]
        )
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            "Follow": grpc.unary_stream_rpc_method_handler(self.follow),
            "Chatty": grpc.unary_stream_rpc_method_handler(self.chatty),
            "Ingest": grpc.stream_unary_rpc_method_handler(self.ingest),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        credentials = grpc.ssl_server_credentials(
            [(self.server_bundle.key_pem, self.server_bundle.certificate_pem)],
            root_certificates=self.ca.certificate_pem,
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        return server, port

    def channel(self, port: int, bundle: IdentityBundle) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_pem,
        )
        return grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            credentials,
            options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)],
        )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[tuple[Harness, int]]:
    setup = Harness(tmp_path)
    server, port = setup.server()
    await server.start()
    try:
        yield setup, port
    finally:
        await server.stop(0)


async def _refusal(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call, 5)
    return caught.value


async def test_a_revoked_name_is_refused_on_its_next_call(harness: tuple[Harness, int]) -> None:
    setup, port = harness
    async with setup.channel(port, setup.member) as channel:
        echo = channel.unary_unary(f"/{SERVICE}/Echo")
        assert await echo(b"hi", timeout=5) == b"hi"
        setup.revoke(name="alice")
        error = await _refusal(echo(b"hi", timeout=5))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "certificate of alice was revoked" in (error.details() or "")
    async with setup.channel(port, setup.other) as channel:
        assert await channel.unary_unary(f"/{SERVICE}/Echo")(b"ok", timeout=5) == b"ok"


async def test_a_revoked_serial_is_refused_and_only_that_one(harness: tuple[Harness, int]) -> None:
    setup, port = harness
    setup.revoke(serial=setup.member.identity.serial)
    async with setup.channel(port, setup.member) as channel:
        error = await _refusal(channel.unary_unary(f"/{SERVICE}/Echo")(b"hi", timeout=5))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert setup.member.identity.serial in (error.details() or "")
    fresh = setup.ca.issue(name="alice", role=Role.MEMBER, validity_days=1)
    async with setup.channel(port, fresh) as channel:
        assert await channel.unary_unary(f"/{SERVICE}/Echo")(b"hi", timeout=5) == b"hi"


async def test_an_open_stream_of_a_revoked_caller_ends_and_others_go_on(
    harness: tuple[Harness, int],
) -> None:
    setup, port = harness
    async with (
        setup.channel(port, setup.member) as alice_channel,
        setup.channel(port, setup.other) as bob_channel,
    ):
        alice = alice_channel.unary_stream(f"/{SERVICE}/Follow")(b"")
        bob = bob_channel.unary_stream(f"/{SERVICE}/Follow")(b"")
        assert await asyncio.wait_for(alice.read(), 5) == b"first"
        assert await asyncio.wait_for(bob.read(), 5) == b"first"
        assert len(setup.interceptor.open_calls) == 2
        setup.revoke(name="alice")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(alice.read(), 5)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (caught.value.details() or "")
        for _ in range(50):
            if setup.stream_closed == 1 and len(setup.interceptor.open_calls) == 1:
                break
            await asyncio.sleep(0.02)
        assert setup.stream_closed == 1  # the handler's own clean-up ran
        assert len(setup.interceptor.open_calls) == 1
        assert not bob.done()
        bob.cancel()


async def test_a_stream_busy_sending_ends_too(harness: tuple[Harness, int]) -> None:
    setup, port = harness
    async with setup.channel(port, setup.member) as channel:
        call = channel.unary_stream(f"/{SERVICE}/Chatty")(b"")
        assert await asyncio.wait_for(call.read(), 5) == b"0"
        setup.revoke(name="alice")

        async def drain() -> None:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(drain(), 10)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_a_request_stream_of_a_revoked_caller_ends(harness: tuple[Harness, int]) -> None:
    setup, port = harness
    async with setup.channel(port, setup.member) as channel:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def requests() -> AsyncIterator[bytes]:
            while True:
                yield await queue.get()

        call = channel.stream_unary(f"/{SERVICE}/Ingest")(requests())
        await queue.put(b"one")
        await asyncio.wait_for(setup.ingest_started.wait(), 5)
        setup.revoke(name="alice")
        error = await _refusal(call)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (error.details() or "")
