"""The router's HTTP side, against real replicas (small aiohttp servers on loopback):
a replica that cannot be reached is left for another before a byte reached the
client; a stream is passed on as it comes; a client that leaves cancels its request
upstream; hostile requests get OpenAI-shaped errors and harm nobody else."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from murmur.node.router.intake import MAX_BODY_BYTES, Intake
from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.v1 import types_pb2
from tests.support.chat_replica import chat_replica
from tests.support.nodes import free_port


@dataclass
class Replica:
    """A replica whose stream waits for ``release`` after its first event."""

    port: int = field(default_factory=free_port)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response({"answer": "whole", "port": self.port})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b'data: {"n": 0}\n\n')
            await self.release.wait()
            await response.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return response


def table_of(*replicas: tuple[int, bool]) -> RoutingTable:
    info = types_pb2.NodeInfo(name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE)
    for index, (port, ready) in enumerate(replicas):
        info.endpoints.add(service="s", job_id=f"j{index}", port=port, ready=ready, models=["m"])
    return RoutingTable([info], "n1")


@contextlib.asynccontextmanager
async def router_over(table: RoutingTable) -> AsyncIterator[str]:
    port = free_port()
    server = RouterServer(ModelRouter(lambda: table), "127.0.0.1", port)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.close()


async def test_a_replica_that_cannot_be_reached_is_left_for_another() -> None:
    replica = Replica()
    await replica.start()
    dead = free_port()  # nothing listens there
    table = table_of((dead, True), (replica.port, True))
    async with router_over(table) as router, aiohttp.ClientSession() as http:
        for _ in range(4):  # whichever is tried first
            async with http.post(f"{router}/v1/chat/completions", json={"model": "m"}) as answer:
                assert answer.status == 200
                assert (await answer.json())["port"] == replica.port
    assert replica.runner is not None
    await replica.runner.cleanup()


async def test_a_replica_that_failed_is_set_aside_so_later_requests_skip_it() -> None:
    """A dead host costs one request the connect attempt, not every request: the
    replica that failed is tried last until it answers again."""
    replica = Replica()
    await replica.start()
    attempts = 0

    async def refuse_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()  # fails before a byte of answer

    broken = await asyncio.start_server(refuse_at_once, "127.0.0.1", 0)
    broken_port = broken.sockets[0].getsockname()[1]
    table = table_of((broken_port, True), (replica.port, True))
    async with router_over(table) as router, aiohttp.ClientSession() as http:
        for _ in range(8):  # in turn, the broken one would get half of them
            async with http.post(f"{router}/v1/chat/completions", json={"model": "m"}) as answer:
                assert answer.status == 200
                assert (await answer.json())["port"] == replica.port
    assert attempts == 1
    broken.close()
    await broken.wait_closed()
    assert replica.runner is not None
    await replica.runner.cleanup()


async def test_a_stream_is_passed_on_as_it_comes_and_a_client_that_leaves_cancels_it() -> None:
    replica = Replica()
    await replica.start()
    async with router_over(table_of((replica.port, True))) as router:
        async with aiohttp.ClientSession() as http:
            answer = await http.post(
                f"{router}/v1/chat/completions", json={"model": "m", "stream": True}
            )
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            # The first event arrives while the replica still holds back the rest.
            first = await asyncio.wait_for(answer.content.readline(), 5)
            assert first == b'data: {"n": 0}\n'
            answer.close()  # the client goes away mid-stream
        await asyncio.wait_for(replica.cancelled.wait(), 5)
    assert replica.runner is not None
    await replica.runner.cleanup()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b'{"messages": []}', 400, "model"),
        (b'["m"]', 400, "model"),
        (json.dumps({"model": "other"}).encode(), 404, "does not exist"),
        (None, 413, "over"),  # a body one byte over the limit
    ],
    ids=["malformed", "no-model", "not-an-object", "unknown-model", "huge"],
)
async def test_bad_requests_get_openai_shaped_errors(
    body: bytes | None, status: int, says: str
) -> None:
    data = io.BytesIO(b"x" * (MAX_BODY_BYTES + 1)) if body is None else body
    async with (
        router_over(table_of()) as router,
        aiohttp.ClientSession() as http,
        http.post(f"{router}/v1/chat/completions", data=data) as answer,
    ):
        assert answer.status == status
        error = (await answer.json())["error"]
        assert says in error["message"]
        assert error["type"]


async def test_a_client_that_sends_half_a_request_holds_up_nobody() -> None:
    replica = Replica()
    await replica.start()
    async with router_over(table_of((replica.port, True))) as router:
        host, port = router.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        await writer.drain()  # ... and never the rest
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{router}/v1/chat/completions", json={"model": "m"}) as answer,
        ):
            assert answer.status == 200
        writer.close()
    assert replica.runner is not None
    await replica.runner.cleanup()


async def test_a_whole_answer_cut_short_is_a_502_not_half_an_answer() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(len(b'{"model": "m"}'))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b'Content-Length: 100\r\n\r\n{"choices": [')
        await writer.drain()
        writer.close()  # ... and never the other 87 bytes

    replica = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = replica.sockets[0].getsockname()[1]
    async with (
        router_over(table_of((port, True))) as router,
        aiohttp.ClientSession() as http,
        http.post(f"{router}/v1/chat/completions", data=b'{"model": "m"}') as answer,
    ):
        assert answer.status == 502
        assert (await answer.json())["error"]["code"] == "upstream_failed"
    replica.close()
    await replica.wait_closed()


async def test_the_routing_table_is_reused_briefly_but_never_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("murmur.node.router.proxy.TABLE_REUSE_SECONDS", 60.0)
    replica = Replica()
    await replica.start()
    built: list[int] = []

    def table() -> RoutingTable:
        built.append(1)
        return table_of((replica.port, True))

    port = free_port()
    server = RouterServer(ModelRouter(table), "127.0.0.1", port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                async with http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m"}
                ) as answer:
                    assert answer.status == 200
            assert len(built) == 1
            async with http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "other"}
            ) as answer:
                assert answer.status == 404
            assert len(built) == 2  # a refusal asks the latest table
    finally:
        await server.close()
        assert replica.runner is not None
        await replica.runner.cleanup()


async def test_no_cookie_travels_between_requests_and_a_compressed_answer_stays_readable() -> None:
    seen_cookies: list[str] = []

    async def chat(request: web.Request) -> web.Response:
        seen_cookies.append(request.headers.get("Cookie", ""))
        answer = web.json_response({"answer": "x" * 2000})
        answer.set_cookie("session", "of-the-first-user")
        answer.enable_compression()
        return answer

    async with (
        chat_replica(chat) as port,
        router_over(table_of((port, True))) as router,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        for _ in range(2):
            async with http.post(f"{router}/v1/chat/completions", json={"model": "m"}) as answer:
                assert answer.status == 200
                assert (await answer.json())["answer"] == "x" * 2000
    assert seen_cookies == ["", ""]


async def test_paths_and_methods_the_router_does_not_serve_get_aiohttps_404_and_405() -> None:
    """The router's own dispatch (no aiohttp Application in front of it) answers as
    aiohttp's URL dispatcher would."""
    async with router_over(table_of()) as router, aiohttp.ClientSession() as http:
        for path in ("/v1/other", "/v1/chat%2Fcompletions"):  # an encoded slash is no slash
            url = URL(f"{router}{path}", encoded=True)
            async with http.post(url, json={"model": "m"}) as answer:
                assert answer.status == 404
                assert await answer.text() == "404: Not Found"  # not routed at all
        async with http.get(f"{router}/v1/chat/completions") as answer:
            assert answer.status == 405
            assert answer.headers["Allow"] == "POST"
        async with http.post(f"{router}/v1/models") as answer:
            assert answer.status == 405
            assert answer.headers["Allow"] == "GET,HEAD"
        async with http.head(f"{router}/v1/models") as answer:
            assert answer.status == 200
        async with http.get(f"{router}/v1/models") as answer:
            assert answer.status == 200
            assert (await answer.json())["data"] == []


async def test_a_client_that_expects_100_continue_gets_it_then_its_answer() -> None:
    replica = Replica()
    await replica.start()
    async with router_over(table_of((replica.port, True))) as router:
        host, port = router.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"model": "m"}'
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert await asyncio.wait_for(reader.readline(), 2) == b"HTTP/1.1 100 Continue\r\n"
        assert await asyncio.wait_for(reader.readline(), 2) == b"\r\n"
        writer.write(body)
        assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"HTTP/1.1 200")
        writer.close()
    assert replica.runner is not None
    await replica.runner.cleanup()


async def test_a_body_without_a_length_is_held_to_the_intakes_limit_not_aiohttps() -> None:
    """Chunked bodies: one over aiohttp's own 1 MiB default is taken (the intake's
    limit is 16 MiB), and one over the intake's limit is refused even when it all
    arrived before it was read (the router takes such a body without waiting)."""

    async def chunked(body: bytes) -> AsyncIterator[bytes]:
        yield body

    large = json.dumps({"model": "unknown", "pad": "x" * (2 * 1024 * 1024)}).encode()
    async with (
        router_over(table_of()) as router,
        aiohttp.ClientSession() as http,
        http.post(f"{router}/v1/chat/completions", data=chunked(large)) as answer,
    ):
        assert answer.status == 404  # read whole, then found no model of that name
    port = free_port()
    server = RouterServer(
        ModelRouter(lambda: table_of(), intake=Intake(max_body_bytes=100)), "127.0.0.1", port
    )
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                data=chunked(json.dumps({"model": "m", "pad": "x" * 200}).encode()),
            ) as answer,
        ):
            assert answer.status == 413
    finally:
        await server.close()
