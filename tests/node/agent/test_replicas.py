"""A replica's port and readiness: the port is kept in its run's directory (a daemon
restart adopts it with the same); the probe says ready at its first 2xx and not
ready after ``failure_threshold`` failures in a row; every change is published."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from murmur.node.agent.replicas import ReplicaEndpoints
from murmur.v1 import types_pb2
from tests.support.chat_replica import served
from tests.support.nodes import free_port


def replica_of(threshold: int = 2) -> types_pb2.ReplicaOf:
    replica = types_pb2.ReplicaOf(service="llm", models=["m"])
    replica.readiness.path = "/health"
    replica.readiness.period.FromMilliseconds(20)
    replica.readiness.timeout.FromMilliseconds(500)
    replica.readiness.failure_threshold = threshold
    return replica


def test_a_runs_port_is_kept_for_its_next_daemon(tmp_path: Path) -> None:
    first = ReplicaEndpoints(run_dir=lambda run_id: tmp_path / run_id, on_change=lambda: None)
    port = first.port_of("run1")
    again = ReplicaEndpoints(run_dir=lambda run_id: tmp_path / run_id, on_change=lambda: None)
    assert again.port_of("run1") == port
    assert 0 < port < 65536


async def test_ready_at_the_first_success_not_ready_after_the_threshold(tmp_path: Path) -> None:
    healthy = asyncio.Event()
    status = {"code": 503}

    async def health(request: web.Request) -> web.Response:
        if status["code"] == 200:
            healthy.set()
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_get("/health", health)
    async with served(app) as port:
        changes: list[list[bool]] = []
        moved = asyncio.Event()
        endpoints: ReplicaEndpoints

        def changed() -> None:
            changes.append([endpoint.ready for endpoint in endpoints.endpoints()])
            moved.set()

        async def until(ready: bool) -> None:
            async with asyncio.timeout(5):
                while endpoints.endpoints()[0].ready != ready:
                    await moved.wait()
                    moved.clear()

        endpoints = ReplicaEndpoints(run_dir=lambda run_id: tmp_path / run_id, on_change=changed)
        try:
            endpoints.watch("run1", "job1", replica_of(), port)
            (endpoint,) = endpoints.endpoints()
            assert (endpoint.job_id, endpoint.port, endpoint.ready) == ("job1", port, False)
            await asyncio.sleep(0.1)
            assert not endpoints.endpoints()[0].ready  # loading: 503
            status["code"] = 200
            await asyncio.wait_for(healthy.wait(), 5)
            await until(ready=True)
            status["code"] = 500
            await until(ready=False)
            assert changes == [[False], [True], [False]]
            endpoints.forget("run1")
            assert endpoints.endpoints() == []
        finally:
            await endpoints.close()


async def test_a_replica_failing_its_liveness_probe_is_reported_unhealthy_once(
    tmp_path: Path,
) -> None:
    """Readiness flaps (not ready, then ready again) cost nothing but traffic; the
    liveness probe failing ``failure_threshold`` times in a row asks for the run's
    stop, once, with a reason that says why."""
    live = {"code": 200, "asked": 0}
    asked_enough = asyncio.Event()

    async def alive(request: web.Request) -> web.Response:
        live["asked"] += 1
        if live["asked"] >= 6:  # both probes passed a few times
            asked_enough.set()
        return web.Response(status=live["code"])

    app = web.Application()
    app.router.add_get("/health", alive)
    app.router.add_get("/alive", alive)
    async with served(app) as port:
        stops: list[tuple[str, str]] = []
        stopped = asyncio.Event()

        def unhealthy(run_id: str, reason: str) -> None:
            stops.append((run_id, reason))
            stopped.set()

        endpoints = ReplicaEndpoints(
            run_dir=lambda run_id: tmp_path / run_id, on_change=lambda: None, on_unhealthy=unhealthy
        )
        replica = replica_of()
        replica.liveness.path = "/alive"
        replica.liveness.period.FromMilliseconds(20)
        replica.liveness.timeout.FromMilliseconds(500)
        replica.liveness.failure_threshold = 3
        try:
            endpoints.watch("run1", "job1", replica, port)
            await asyncio.wait_for(asked_enough.wait(), 5)
            assert stops == []  # passing probes change nothing
            live["code"] = 500
            await asyncio.wait_for(stopped.wait(), 5)
            await asyncio.sleep(0.2)  # no second ask while the run stops
            assert stops == [("run1", "liveness probe GET /alive failed 3 times in a row")]
        finally:
            await endpoints.close()


async def test_without_a_liveness_probe_a_failing_replica_is_only_not_ready(
    tmp_path: Path,
) -> None:
    stops: list[tuple[str, str]] = []
    endpoints = ReplicaEndpoints(
        run_dir=lambda run_id: tmp_path / run_id,
        on_change=lambda: None,
        on_unhealthy=lambda run_id, reason: stops.append((run_id, reason)),
    )
    try:
        endpoints.watch("run1", "job1", replica_of(), free_port())  # nothing listens
        await asyncio.sleep(0.3)
        assert not endpoints.endpoints()[0].ready
        assert stops == []
    finally:
        await endpoints.close()
