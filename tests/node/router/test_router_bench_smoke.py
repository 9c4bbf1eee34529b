"""The router benchmark's load still measures what it says (tests/bench/bench_router.py):
its clients, through a router, against its aiohttp replica, count whole answers and
whole streams only, and time the first event of each stream before its end. In one
process, a fraction of a second each; no figure is asserted."""

from __future__ import annotations

import argparse

import pytest
from aiohttp import web

from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.v1 import types_pb2
from tests.bench import bench_router, router_replica
from tests.support.nodes import free_port

EVENTS = 8


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_benchmark_clients_count_right_answers_through_a_router(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv("MURMUR_JOB_ID", "job-1")
    settings = argparse.Namespace(model="m", events=EVENTS, event_gap=0.0)
    replica = web.AppRunner(router_replica.answers(settings))
    await replica.setup()
    replica_port = free_port()
    await web.TCPSite(replica, "127.0.0.1", replica_port).start()
    info = types_pb2.NodeInfo(name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE)
    info.endpoints.add(service="s", job_id="job-1", port=replica_port, ready=True, models=["m"])
    table = RoutingTable([info], "n1")
    router_port = free_port()
    router = RouterServer(ModelRouter(lambda: table), "127.0.0.1", router_port)
    await router.start()
    try:
        url = f"http://127.0.0.1:{router_port}/v1/chat/completions"
        figures = bench_router.Figures()
        await bench_router.drive(
            url, bench_router.chat_body("m", stream=stream), figures,
            stream=stream, clients=4, events=EVENTS, seconds=0.2, warmup=0.05,
        )  # fmt: skip
        assert figures.completed > 0
        assert figures.failed == 0
        assert figures.sent >= figures.completed
        assert len(figures.latency) == figures.completed
        if stream:
            assert len(figures.first_event) == figures.completed
            assert all(0 < first <= whole for first, whole in zip(
                figures.first_event, figures.latency, strict=True
            ))  # fmt: skip
        else:
            assert figures.first_event == []

        # A stream one event short, or an answer for a model nobody serves, is a failure.
        failing = bench_router.Figures()
        await bench_router.drive(
            url, bench_router.chat_body("m" if stream else "nobody", stream=stream), failing,
            stream=stream, clients=2, events=EVENTS + 1, seconds=0.1, warmup=0.0,
        )  # fmt: skip
        assert failing.completed == 0
        assert failing.failed > 0
    finally:
        await router.close()
        await replica.cleanup()
