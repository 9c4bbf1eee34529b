"""A router's per-service traffic over its sliding window: what it gossips for
``murmur top``'s requests/s and latency. Pure, on a clock the test moves; and, end to
end in process, the requests a router carries show up in its summary."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.node.router.traffic import LATENCY_BUCKETS, TrafficWindow, latency_bucket
from murmur.v1 import types_pb2
from tests.support.chat_replica import chat_replica
from tests.support.nodes import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0),
        (0.0009, 0),
        (0.001, 1),
        (0.0019, 1),
        (0.002, 2),
        (0.045, 6),  # [32, 64) ms
        (1.0, 10),  # [512, 1024) ms
        (10_000.0, LATENCY_BUCKETS - 1),
        (-0.5, 0),  # a clock that stepped back
        (float("nan"), 0),
    ],
)
def test_latency_buckets_double(seconds: float, bucket: int) -> None:
    assert latency_bucket(seconds) == bucket


def test_a_window_counts_the_last_seconds_and_forgets_the_rest() -> None:
    clock = Clock()
    window = TrafficWindow(window_seconds=30, clock=clock)
    for _ in range(10):
        window.record("llama", latency=0.040, error=False)
    window.record("llama", latency=None, error=True)
    window.record("coder", latency=0.003, error=False)
    clock.now += 0.5
    # A new router covers only the time it has been up.
    first = {traffic.service: traffic for traffic in window.summary()}
    assert first["llama"].window_seconds == 1
    assert first["llama"].requests == 11
    assert first["llama"].errors == 1
    assert list(first["llama"].latency_ms_log2) == [0] * 6 + [10]  # trailing zeros left out
    assert list(first["coder"].latency_ms_log2) == [0, 0, 1]

    clock.now += 20
    window.record("llama", latency=0.5, error=False)
    later = {traffic.service: traffic for traffic in window.summary()}
    assert later["llama"].window_seconds == 21
    assert later["llama"].requests == 12

    clock.now += 15  # the first second left the window; the last request is still in
    (only,) = window.summary()
    assert only.service == "llama"
    assert only.window_seconds == 30
    assert (only.requests, only.errors) == (1, 0)

    clock.now += 30
    assert window.summary() == []


def test_memory_is_bounded_by_the_window_whatever_the_load() -> None:
    clock = Clock()
    window = TrafficWindow(window_seconds=5, clock=clock)
    for step in range(2000):
        clock.now += 0.01 * (step % 7)
        window.record("llama", latency=0.01, error=False)
    assert len(window._rings["llama"]) == 5
    (traffic,) = window.summary()
    assert traffic.requests < 2000


@contextlib.asynccontextmanager
async def replica() -> AsyncIterator[int]:
    async def chat(request: web.Request) -> web.Response:
        if (await request.json()).get("fail"):
            return web.json_response({"error": {"message": "boom"}}, status=500)
        return web.json_response({"object": "chat.completion"})

    async with chat_replica(chat) as port:
        yield port


async def test_a_router_counts_what_it_carries_per_service() -> None:
    async with replica() as port:
        info = types_pb2.NodeInfo(
            name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE
        )
        info.endpoints.add(service="llama", job_id="j1", port=port, ready=True, models=["m"])
        info.endpoints.add(service="coder", job_id="j2", port=1, ready=False, models=["c"])
        table = RoutingTable([info], "n1")
        model_router = ModelRouter(lambda: table)
        router_port = free_port()
        server = RouterServer(model_router, "127.0.0.1", router_port)
        await server.start()
        url = f"http://127.0.0.1:{router_port}/v1/chat/completions"
        try:
            async with aiohttp.ClientSession() as http:
                for body, status in (
                    ({"model": "m"}, 200),
                    ({"model": "m"}, 200),
                    ({"model": "m", "fail": True}, 500),  # the replica's error
                    ({"model": "c"}, 503),  # no ready replica: the router's
                    ({"model": "nobody-serves-this"}, 404),  # no service: counted nowhere
                ):
                    async with http.post(url, json=body) as answer:
                        assert answer.status == status
        finally:
            await server.close()
    summary = {traffic.service: traffic for traffic in model_router.traffic.summary()}
    assert set(summary) == {"llama", "coder"}
    assert (summary["llama"].requests, summary["llama"].errors) == (3, 1)
    assert sum(summary["llama"].latency_ms_log2) == 3
    assert (summary["coder"].requests, summary["coder"].errors) == (1, 1)
    assert sum(summary["coder"].latency_ms_log2) == 0  # refused: no latency
