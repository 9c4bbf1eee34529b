"""API keys on the router, over real HTTP (a router and a replica on loopback): a key
is checked on every request (401 unknown, wrong, revoked, expired; 403 a model it
may not use, which /v1/models does not list; 429 over its rate, with Retry-After),
the key never reaches the replica, and each key's requests and tokens are counted
from the answers, streamed or not."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from murmur.node.control.queue.api_keys import ApiKeyRecord, new_key, secret_sha256
from murmur.node.router.keys import UNKNOWN_BOOK, KeyBook, KeyGate
from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.node.router.usage import UsageCounter
from murmur.v1 import types_pb2
from tests.support.nodes import free_port

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


@dataclass
class Replica:
    """An OpenAI-style replica that answers with ``usage`` (a stream: in its last
    chunk, written in pieces that cut lines in two) and notes the headers it got."""

    port: int = field(default_factory=free_port)
    headers: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        body = await request.json()
        if not body.get("stream"):
            return web.json_response({"choices": [{"message": {"content": "hi"}}], "usage": USAGE})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events = [
            {"choices": [{"delta": {"content": "a"}}]},
            {"choices": [{"delta": {"content": "b"}}], "usage": None},
            {"choices": [], "usage": USAGE},
        ]
        text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        data = text.encode()
        for start in range(0, len(data), 7):  # pieces that cut events and lines anywhere
            await response.write(data[start : start + 7])
        await response.write_eof()
        return response


def table_of(port: int) -> RoutingTable:
    info = types_pb2.NodeInfo(name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE)
    info.endpoints.add(service="s", job_id="j0", port=port, ready=True, models=["m", "m:sql"])
    info.endpoints.add(service="t", job_id="j1", port=port, ready=True, models=["other"])
    return RoutingTable([info], "n1")


@dataclass
class Keys:
    """A key table as the log would hold it, and the whole keys of each record."""

    records: dict[str, ApiKeyRecord] = field(default_factory=dict)
    whole: dict[str, str] = field(default_factory=dict)
    known: bool = True

    def add(self, name: str, **fields: object) -> str:
        key_id, secret, key = new_key()
        self.records[name] = ApiKeyRecord(
            id=key_id, name=name, owner="alice", secret_sha256=secret_sha256(secret),
            models=(), rpm=0, created_at_us=1, expires_at_us=0,
        )  # fmt: skip
        self.records[name] = _replace(self.records[name], **fields)
        self.whole[name] = key
        return key

    def book(self) -> KeyBook:
        if not self.known:
            return UNKNOWN_BOOK
        return KeyBook.of(self.records.values(), len(self.records))


def _replace(record: ApiKeyRecord, **fields: object) -> ApiKeyRecord:
    import dataclasses

    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def router_with(
    keys: Keys, *, required: bool = False, clock: list[float] | None = None
) -> AsyncIterator[tuple[str, Replica, UsageCounter]]:
    replica = Replica()
    await replica.start()
    usage = UsageCounter()
    now = clock if clock is not None else [1_000.0]
    gate = KeyGate(
        keys.book, required=required, wall_clock=lambda: now[0], monotonic=lambda: now[0]
    )
    port = free_port()
    server = RouterServer(
        ModelRouter(lambda: table_of(replica.port), keys=gate, usage=usage), "127.0.0.1", port
    )
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}", replica, usage
    finally:
        await server.close()
        await replica.close()


async def chat(
    http: aiohttp.ClientSession, router: str, key: str | None, model: str = "m", **extra: object
) -> tuple[int, dict[str, object], dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(
        f"{router}/v1/chat/completions", json={"model": model, **extra}, headers=headers
    ) as answer:
        text = await answer.text()
        body = json.loads(text) if answer.content_type == "application/json" else {"text": text}
        return answer.status, body, dict(answer.headers)


def error_code(body: dict[str, object]) -> object:
    error = body["error"]
    assert isinstance(error, dict)
    assert error["message"]
    assert error["type"]
    return error["code"]


async def test_an_open_router_serves_without_a_key_but_checks_one_it_is_given() -> None:
    keys = Keys()
    good = keys.add("eval")
    async with router_with(keys) as (router, replica, usage), aiohttp.ClientSession() as http:
        status, _, _ = await chat(http, router, None)
        assert status == 200
        status, body, _ = await chat(http, router, "mur_0123456789ab_wrong")
        assert (status, error_code(body)) == (401, "invalid_api_key")
        status, body, _ = await chat(http, router, "sk-not-ours")
        assert (status, error_code(body)) == (401, "invalid_api_key")
        wrong_secret = good[: -len("x")] + ("y" if not good.endswith("y") else "z")
        status, body, _ = await chat(http, router, wrong_secret)
        assert (status, error_code(body)) == (401, "invalid_api_key")
        status, _, _ = await chat(http, router, good)
        assert status == 200
        # The key stays with the router: the replica never sees it.
        assert all("Authorization" not in headers for headers in replica.headers)
        assert len(replica.headers) == 2
        taken = usage.take(10)
        assert list(taken) == [keys.records["eval"].id]  # the anonymous request counts for none


async def test_a_router_that_requires_keys_refuses_a_request_without_one() -> None:
    keys = Keys()
    good = keys.add("eval")
    async with (
        router_with(keys, required=True) as (router, replica, _),
        aiohttp.ClientSession() as http,
    ):
        status, body, _ = await chat(http, router, None)
        assert (status, error_code(body)) == (401, "missing_api_key")
        async with http.get(f"{router}/v1/models") as answer:
            assert answer.status == 401
        # Refused before its body is read: a stranger's body is not waited for.
        host, port = router.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        )
        await writer.drain()  # ... and never the body
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 401")
        writer.close()
        assert (await chat(http, router, good))[0] == 200
        assert len(replica.headers) == 1


async def test_revoked_and_expired_keys_are_refused() -> None:
    keys = Keys()
    revoked = keys.add("old", revoked_at_us=5)
    expiring = keys.add("trial", expires_at_us=2_000 * 1_000_000)
    clock = [1_000.0]
    async with router_with(keys, clock=clock) as (router, _, _), aiohttp.ClientSession() as http:
        status, body, _ = await chat(http, router, revoked)
        assert (status, error_code(body)) == (401, "revoked_api_key")
        assert (await chat(http, router, expiring))[0] == 200
        clock[0] = 2_000.0
        status, body, _ = await chat(http, router, expiring)
        assert (status, error_code(body)) == (401, "expired_api_key")


async def test_a_key_reaches_only_its_models() -> None:
    keys = Keys()
    narrow = keys.add("narrow", models=("m",))
    wide = keys.add("wide")
    async with router_with(keys) as (router, replica, _), aiohttp.ClientSession() as http:
        status, body, _ = await chat(http, router, narrow, model="other")
        assert (status, error_code(body)) == (403, "model_not_allowed")
        assert (await chat(http, router, narrow, model="m"))[0] == 200
        assert (await chat(http, router, narrow, model="m:sql"))[0] == 200  # its adapter
        # Refused before routing: a model nobody serves is 403 too, not 404.
        assert (await chat(http, router, narrow, model="nowhere"))[0] == 403
        assert (await chat(http, router, wide, model="other"))[0] == 200
        listed = {}
        for name, key in (("narrow", narrow), ("wide", wide), ("none", None)):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with http.get(f"{router}/v1/models", headers=headers) as answer:
                listed[name] = [entry["id"] for entry in (await answer.json())["data"]]
        assert listed == {"narrow": ["m", "m:sql"], "wide": ["m", "m:sql", "other"],
                          "none": ["m", "m:sql", "other"]}  # fmt: skip
        assert len(replica.headers) == 3


async def test_a_key_over_its_rate_waits_with_retry_after() -> None:
    keys = Keys()
    limited = keys.add("ci", rpm=2)
    other = keys.add("other", rpm=2)
    clock = [1_000.0]
    async with (
        router_with(keys, clock=clock) as (router, _, usage),
        aiohttp.ClientSession() as http,
    ):
        assert (await chat(http, router, limited))[0] == 200
        assert (await chat(http, router, limited))[0] == 200
        status, body, headers = await chat(http, router, limited)
        assert (status, error_code(body)) == (429, "rate_limit_exceeded")
        assert headers["Retry-After"] == "30"  # one request's worth of 2 a minute
        assert (await chat(http, router, other))[0] == 200  # each key has its own
        clock[0] += 30
        assert (await chat(http, router, limited))[0] == 200
        taken = usage.take(10)
        assert taken[keys.records["ci"].id].requests == 3  # the refused one is not counted


async def test_a_router_that_has_not_learnt_the_keys_refuses_every_key() -> None:
    keys = Keys()
    good = keys.add("eval")
    keys.known = False
    async with router_with(keys) as (router, _, _), aiohttp.ClientSession() as http:
        status, body, headers = await chat(http, router, good)
        assert (status, error_code(body)) == (503, "keys_unknown")
        assert headers["Retry-After"] == "2"
        assert (await chat(http, router, None))[0] == 200  # open router, no key


async def test_usage_is_counted_per_key_from_answers_streamed_or_not() -> None:
    keys = Keys()
    first = keys.add("first")
    second = keys.add("second")
    async with router_with(keys) as (router, _, usage), aiohttp.ClientSession() as http:
        for key, stream in ((first, False), (first, True), (second, True), (first, True)):
            status, body, _ = await chat(http, router, key, stream=stream)
            assert status == 200
            if stream:
                text = body["text"]
                assert isinstance(text, str)
                assert text.endswith("data: [DONE]\n\n")  # passed on whole
        taken = usage.take(10)
        counts = {
            name: (c.requests, c.prompt_tokens, c.completion_tokens)
            for name in ("first", "second")
            for c in [taken[keys.records[name].id]]
        }
        assert counts == {"first": (3, 21, 9), "second": (1, 7, 3)}
        assert len(usage) == 0
