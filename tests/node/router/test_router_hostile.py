"""Hostile clients and a replica that never answers, against a real router (in
process, on loopback) in front of real toy replicas (tests/support/openai_server.py
in their own processes): malformed JSON, huge bodies, unknown fields, slow-loris
clients, too many connections, a client leaving mid-stream, costly JSON, a replica
that takes requests and never answers. After each, the router answers a normal
request at once, and this process holds no more file descriptors than before it:
nothing leaked. The router shares the daemon's event loop, so a loop kept turning
here is a daemon kept healthy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from murmur.node.router.intake import MAX_BODY_BYTES, MAX_JSON_VALUES, Intake
from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.v1 import types_pb2
from tests.support import openai_server
from tests.support.nodes import free_port

TOY, DRIP, HUNG = "toy-llm", "drip-llm", "hung-llm"
IDLE_SECONDS = 0.5
BODY_SECONDS = 0.5
ANSWER_SECONDS = 0.5
LINGER_SECONDS = 0.3
MAX_CONNECTIONS = 8
CHAT = {"model": TOY, "messages": [{"role": "user", "content": "hello"}]}


@dataclass(frozen=True)
class Replicas:
    toy: int
    drip: int
    """Streams 100 events, 50 ms apart."""
    hung: int
    """Takes requests and never answers."""


@pytest.fixture(scope="module")
def replicas() -> Iterator[Replicas]:
    ports = {TOY: free_port(), DRIP: free_port(), HUNG: free_port()}
    extra = {TOY: [], DRIP: ["--events", "100", "--event-gap", "0.05"], HUNG: ["--hang"]}
    processes = [
        subprocess.Popen(
            [sys.executable, "-S", openai_server.__file__, "--model", model, *extra[model]],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
        )
        for model, port in ports.items()
    ]
    try:
        for port in ports.values():
            wait_listening(port)
        yield Replicas(toy=ports[TOY], drip=ports[DRIP], hung=ports[HUNG])
    finally:
        for process in processes:
            process.kill()
            process.wait()


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the toy replica on {port} never listened")
        time.sleep(0.02)


@dataclass
class Router:
    url: str
    port: int
    model_router: ModelRouter
    server: RouterServer
    baseline_fds: int = 0


def table_of(replicas: Replicas) -> RoutingTable:
    info = types_pb2.NodeInfo(name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE)
    for model, port in ((TOY, replicas.toy), (DRIP, replicas.drip), (HUNG, replicas.hung)):
        info.endpoints.add(
            service=model, job_id=f"j-{model}", port=port, ready=True, models=[model]
        )
    return RoutingTable([info], "n1")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def router_over(replicas: Replicas, intake: Intake | None = None) -> AsyncIterator[Router]:
    table = table_of(replicas)
    model_router = ModelRouter(
        lambda: table,
        intake=intake or Intake(body_seconds=BODY_SECONDS),
        answer_seconds=ANSWER_SECONDS,
    )
    port = free_port()
    server = RouterServer(
        model_router, "127.0.0.1", port, max_connections=MAX_CONNECTIONS,
        idle_seconds=IDLE_SECONDS, linger_seconds=LINGER_SECONDS,
    )  # fmt: skip
    await server.start()
    router = Router(f"http://127.0.0.1:{port}", port, model_router, server)
    try:
        await answers_at_once(router)  # the router's pooled connection to the toy is open
        router.baseline_fds = open_fds()
        yield router
    finally:
        await server.close()


@pytest.fixture
async def router(replicas: Replicas) -> AsyncIterator[Router]:
    async with router_over(replicas) as router:
        yield router


async def answers_at_once(router: Router) -> None:
    """A normal request is answered, within a second."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.post(f"{router.url}/v1/chat/completions", json=CHAT) as answer,
    ):
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["model"] == TOY
    assert time.monotonic() - started < 1.0


async def healthy(router: Router) -> None:
    """The router answers at once and holds no more descriptors than at the start."""
    await answers_at_once(router)
    deadline = time.monotonic() + 3
    while open_fds() > router.baseline_fds:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{open_fds()} descriptors open, {router.baseline_fds} before: leaked"
            )
        await asyncio.sleep(0.02)
    assert router.model_router.in_flight() == {}


async def post(router: Router, body: bytes) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{router.url}/v1/chat/completions",
            data=io.BytesIO(body),
            headers={"Content-Type": "application/json"},
        ) as answer,
    ):
        return answer.status, await answer.json()


async def raw(router: Router) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", router.port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the router sent before it closed the connection, which it must do in
    ``seconds``."""
    received = b""
    async with asyncio.timeout(seconds):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                received += chunk
    return received


def close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


MALFORMED = [
    (b"{not json", "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    (b"", "not JSON"),
    (b"[" * 200_000, "not JSON"),  # deeper than Python's recursion limit
    (b'["toy-llm"]', "JSON object"),
    (b'"toy-llm"', "JSON object"),
    (b'{"messages": []}', "must give a model"),
    (b'{"model": null}', "must give a model"),
    (b'{"model": 42}', "must be a string"),
    (b'{"model": ["toy-llm"]}', "must be a string"),
    (b'{"model": "' + b"x" * 300 + b'"}', "over 256 characters"),
    (b'{"model": "toy-llm", "x": [' + b"0," * MAX_JSON_VALUES + b"0]}", "JSON values"),
]


async def test_malformed_bodies_are_refused_openai_style(router: Router) -> None:
    for body, says in MALFORMED:
        status, answer = await post(router, body)
        assert status == 400, (body[:40], answer)
        error = answer["error"]
        assert isinstance(error, dict)
        assert says in error["message"], (body[:40], error)
        assert error["type"] == "invalid_request_error"
    await healthy(router)


async def test_unknown_fields_reach_the_replica_byte_for_byte(router: Router) -> None:
    body = (
        b'{"temperature":0.2,  "model" : "toy-llm", "x_vendor": {"nested": [1, 2.50, null]},'
        b' "messages": [{"role": "user", "content": "caf\\u00e9 \xc3\xa9"}], "n": 1e0}'
    )
    status, answer = await post(router, body)
    assert status == 200
    assert answer["request_sha256"] == hashlib.sha256(body).hexdigest()
    await healthy(router)


async def test_huge_bodies_are_refused_without_being_kept(router: Router) -> None:
    # Declared too large: refused from the headers, before the body is sent.
    reader, writer = await raw(router)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    )
    status_line = await asyncio.wait_for(reader.readline(), 2)
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    close(writer)

    # No length given (chunked): refused once the limit is passed.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "toy-llm", "x": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{router.url}/v1/chat/completions", data=chunks()) as answer,
    ):
        assert answer.status == 413
        assert "over" in (await answer.json())["error"]["message"]
    await healthy(router)


async def test_bodies_held_at_once_are_bounded(replicas: Replicas) -> None:
    budget = 1024 * 1024
    intake = Intake(body_seconds=BODY_SECONDS, budget_bytes=budget)
    async with router_over(replicas, intake) as router:
        big = json.dumps({"model": HUNG, "pad": "x" * (budget // 2 + 1000)}).encode()
        held = asyncio.create_task(post(router, big))  # held until its replica times out
        await asyncio.sleep(0.1)
        assert intake.held_bytes == len(big)
        status, answer = await post(router, big.replace(HUNG.encode(), TOY.encode()))
        assert status == 503
        assert answer["error"]["code"] == "router_busy"  # type: ignore[index]
        assert (await held)[0] == 504
        assert intake.held_bytes == 0
        status, _ = await post(router, big.replace(HUNG.encode(), TOY.encode()))
        assert status == 200
        await healthy(router)


async def test_slow_loris_clients_are_cut_off(router: Router) -> None:
    # Headers a byte at a time: closed once IDLE_SECONDS passed without a request.
    dripping, drip_writer = await raw(router)
    drip_writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")

    async def drip(writer: asyncio.StreamWriter, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            for byte in data:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

    header_drip = asyncio.create_task(drip(drip_writer, b"X-Slow: " + b"a" * 100))
    # One that connects and says nothing.
    silent, silent_writer = await raw(router)
    # A body a byte at a time: 408 once BODY_SECONDS passed, then closed.
    slow_body, body_writer = await raw(router)
    body_writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    body_drip = asyncio.create_task(drip(body_writer, b'{"model": "toy-llm"' + b" " * 900))

    await answers_at_once(router)  # meanwhile, others are served as usual
    started = time.monotonic()
    assert await closed_within(dripping, IDLE_SECONDS + 1) == b""
    assert await closed_within(silent, IDLE_SECONDS + 1) == b""
    refused = await closed_within(slow_body, BODY_SECONDS + LINGER_SECONDS + 1)
    assert refused.startswith(b"HTTP/1.1 408"), refused[:80]
    assert b"request_timeout" in refused
    assert time.monotonic() - started < 2.5
    for task in (header_drip, body_drip):
        task.cancel()
    for writer in (drip_writer, silent_writer, body_writer):
        close(writer)
    await healthy(router)


async def test_connections_over_the_cap_are_turned_away_at_once(router: Router) -> None:
    held = [await raw(router) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.05)
    reader, writer = await raw(router)
    assert await closed_within(reader, 0.3) == b""  # long before the idle ones time out
    assert router.server.turned_away >= 1
    close(writer)
    for held_reader, _ in held:  # the idle ones go once IDLE_SECONDS passed
        assert await closed_within(held_reader, IDLE_SECONDS + 1) == b""
    for _, held_writer in held:
        close(held_writer)
    await healthy(router)


async def test_a_replica_that_never_answers_costs_a_504_and_holds_up_nobody(
    router: Router,
) -> None:
    hung = [
        asyncio.create_task(post(router, json.dumps({"model": HUNG}).encode())) for _ in range(5)
    ]
    await asyncio.sleep(0.05)
    await answers_at_once(router)
    started = time.monotonic()
    for status, answer in await asyncio.gather(*hung):
        assert status == 504
        assert answer["error"]["code"] == "upstream_timeout"  # type: ignore[index]
    assert time.monotonic() - started < ANSWER_SECONDS + 1
    await healthy(router)  # the connections to the hung replica were closed


async def test_a_client_leaving_mid_stream_cancels_its_request_upstream(router: Router) -> None:
    http = aiohttp.ClientSession()
    answer = await http.post(
        f"{router.url}/v1/chat/completions", json={"model": DRIP, "stream": True}
    )
    assert answer.status == 200
    assert (await asyncio.wait_for(answer.content.readline(), 2)).startswith(b"data: ")
    assert router.model_router.in_flight() == {f"j-{DRIP}": 1}
    answer.close()  # 5 s of events left
    await http.close()
    deadline = time.monotonic() + 2
    while router.model_router.in_flight():
        assert time.monotonic() < deadline, "the request upstream was not cancelled"
        await asyncio.sleep(0.02)
    await healthy(router)


async def test_costly_json_does_not_stall_the_loop(router: Router) -> None:
    """Bodies that cost the most to parse per byte (arrays of empty arrays), sent at
    once: the loop turns between their parses."""
    body = b'{"model": "toy-llm", "x": [' + b"[]," * (MAX_JSON_VALUES // 4) + b"[]] junk"
    started = time.perf_counter()
    with contextlib.suppress(ValueError):
        json.loads(body)
    one_parse = time.perf_counter() - started
    lags: list[float] = []

    async def watch() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(*(post(router, body) for _ in range(4)))
    watcher.cancel()
    assert [status for status, _ in answers] == [400] * 4
    # Ungated, the four parses could land in one turn of the loop.
    assert max(lags) < 2.5 * one_parse + 0.05, (max(lags), one_parse)
    await healthy(router)
